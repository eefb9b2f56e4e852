"""The evolution loop's config: the shared choices once, each stage's own config beneath."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from meds3.engines.config import Backend, EngineConfig
from meds3.eval import EvalConfig
from meds3.rollout import RolloutConfig
from meds3.train import PolicyTrainConfig, PRMTrainConfig

# Fields of the stage configs that the loop fills in itself (paths, inputs, base model);
# values given for them in the stage sections are replaced. The engine fields of rollout and
# eval (model, backend, engine, adapter) come whole from EvolveConfig.engine_config.
LOOP_FIELDS = {
    "rollout": ("seeds", "output_dir", "limit", "prm", "search", "prompt"),
    "policy": ("trees", "base_model", "output_dir"),
    "prm": ("trees", "base_model", "output_dir"),
    "eval": ("datasets", "prm", "output_dir"),
}


@dataclass
class ContaminationConfig:
    """The check, before any search, that no seed question of the rollout pool duplicates an
    evaluation question (``meds3 data overlap``; docs/data.md, "Contamination check")."""

    check: bool = True  # run it (off: the pool is searched as split)
    # Extra files to check the pool against, besides what the loop evaluates on (eval_datasets
    # and the held-out split, always checked).
    against: list[str] = field(default_factory=list)
    # drop (default): search without them, recorded in contamination.json (nothing is lost: a
    # dropped question is named there); refuse: stop, naming the ids
    action: Literal["refuse", "drop"] = "drop"
    threshold: float = 0.5  # n-gram overlap coefficient of a near duplicate (above 1: exact duplicates only)
    ngram: int = 5  # word n-gram size of the near-duplicate check

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")


@dataclass
class EvolveConfig:
    """MedS3 self-evolution: for k = 1..K, rollout with policy k -> train policy k+1 and
    PRM k+1 on the trees so far -> evaluate; every stage in its own resumable directory.

    The stage sections (``rollout``, ``policy``, ``prm``, ``eval``) are the stages' own configs
    (see docs/configuration.md); the loop sets their paths, model and adapter fields.
    """

    output_dir: str = "runs/evolve"  # one folder per iteration and stage, plus report files
    iterations: int = 1  # K; the paper ran several
    base_model: str = "smollm2-135m-instruct"  # policy 1, and the base every LoRA is trained on
    backend: Backend = "transformers"  # generation engine of rollout and eval
    engine: dict[str, Any] = field(default_factory=dict)  # build_engine options
    seeds: list[str] = field(default_factory=lambda: ["seed_data/clinical_calc.jsonl"])  # seed question files
    seed_format: str = "auto"
    questions_per_iteration: int = 8  # seed questions searched in each iteration (new ones each time)
    held_out: int = 24  # seed questions kept out of every rollout and evaluated on (0: none)
    eval_datasets: list[str] = field(default_factory=list)  # extra benchmark files evaluated each iteration
    eval_base: bool = True  # also evaluate the base policy (iteration 0) for the base-vs-evolved table
    accumulate_trees: bool = True  # train iteration k on the trees of iterations 1..k (else k only)
    # From iteration 2 on, the policy is fine-tuned: MedS3 drops the few-shot examples and the
    # direct-answer simulation prompt and samples rollouts at T=1.0. These override
    # rollout.search / rollout.prompt fields for iterations >= 2 (e.g. {rollout_temperature: 1.0}).
    later_search: dict[str, Any] = field(default_factory=dict)
    later_prompt: dict[str, Any] = field(default_factory=dict)
    max_prompt_tokens: int = 1024  # room for the rendered question in the context-length check
    # Close the generation engine before training and before PRM scoring, so its memory (vLLM
    # reserves gpu_memory_utilization of the GPU) is free for them; null: when backend is vllm
    # or a GPU is present. Off, one engine serves every rollout and eval stage (CPU default).
    release_engine: Optional[bool] = None
    # Where the loop's own metrics go each iteration (search/*, accuracy/*, train/*; meds3.tracking):
    # "none", "tensorboard", "wandb" or a list; events in <output_dir>/tracking. The trainers'
    # losses follow policy.report_to / prm.report_to.
    report_to: Union[str, list[str]] = "none"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    policy: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    prm: PRMTrainConfig = field(default_factory=PRMTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)

    def __post_init__(self) -> None:
        from meds3.config import check_output_dir

        check_output_dir(self.output_dir)
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.questions_per_iteration < 1:
            raise ValueError(f"questions_per_iteration must be >= 1, got {self.questions_per_iteration}")
        if self.held_out < 0:
            raise ValueError(f"held_out must be >= 0, got {self.held_out}")
        if not self.seeds:
            raise ValueError("seeds must list at least one question file")
        if self.held_out == 0 and not self.eval_datasets:
            raise ValueError("nothing to evaluate on: set held_out > 0 or list eval_datasets")
        from meds3.tracking import report_targets

        report_targets(self.report_to)  # an unknown integration fails at load
        self.search_for(2)  # unknown or bad keys in later_search / later_prompt fail at load
        self.engine_options()  # requests that cannot fit engine.max_model_len fail at load

    def releases_engine(self) -> bool:
        """Whether the loop frees the generation engine before training and PRM scoring."""
        if self.release_engine is not None:
            return self.release_engine
        if self.backend == "vllm":
            return True
        import torch

        return torch.cuda.is_available()

    def engine_options(self) -> dict[str, Any]:
        """``engine`` with ``max_model_len`` set (vLLM, when not given) to the longest request of
        any stage: the rollouts of every iteration's search and the evaluation.

        Raises:
            ConfigError: a request that cannot fit ``engine.max_model_len``, naming the keys.
        """
        from meds3.engines.lengths import check_fits, eval_need, search_need, with_context

        needs = {f"rollout (iteration {k})":
                 search_need(self.search_for(k)[0], self.max_prompt_tokens, "rollout.search")
                 for k in (1, 2)}
        needs["eval"] = eval_need(self.eval, self.max_prompt_tokens)
        if self.eval.mcts:
            needs["eval.mcts_search"] = search_need(self.eval.mcts_search, self.max_prompt_tokens, "eval.mcts_search")
        return with_context(self.engine, self.backend, check_fits(needs, self.engine, self.backend))

    def engine_config(self, adapter: Optional[str] = None) -> EngineConfig:
        """The policy every rollout and eval stage generates with: ``base_model`` on ``backend``
        with :meth:`engine_options` (sized for every stage, so one engine serves them all) and
        ``adapter`` (policy k's LoRA; None: the base model)."""
        return EngineConfig(self.base_model, self.backend, self.engine_options(), adapter)

    def search_for(self, k: int):
        """``(SearchConfig, PromptConfig)`` of iteration ``k``: the rollout section's, with
        ``later_search``/``later_prompt`` applied from iteration 2 on. The PRM prior needs PRM
        k-1, so iteration 1 searches without it.

        Raises:
            ConfigError: a key of ``later_search``/``later_prompt`` the configs do not have, or a bad value.
        """
        from meds3.config import ConfigError, from_dict, to_dict
        from meds3.data.prompts import PromptConfig
        from meds3.mcts.config import SearchConfig

        search, prompt = self.rollout.search, self.rollout.prompt
        if k >= 2:
            try:
                search = from_dict(SearchConfig, {**to_dict(search), **self.later_search})
                prompt = from_dict(PromptConfig, {**to_dict(prompt), **self.later_prompt})
            except (ConfigError, ValueError, TypeError) as exc:
                raise ConfigError(f"later_search / later_prompt: {exc}") from exc
        if k == 1 and search.prm_prior_weight > 0:
            search = dataclasses.replace(search, prm_prior_weight=0.0)
        return search, prompt
