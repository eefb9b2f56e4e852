"""The evaluation job's typed config."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from meds3.data.prompts import PromptConfig
from meds3.engines.config import EngineConfig
from meds3.infer.budget import BudgetConfig
from meds3.infer.mcts import inference_search_config
from meds3.infer.selectors import get_selector
from meds3.mcts.config import SearchConfig
from meds3.rollout.ray_config import RayConfig

#: ``PRMScorer``'s precisions (``meds3.train.scorer.PRECISIONS``, not imported: it loads torch).
PRM_PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class EvalConfig(EngineConfig):
    """A benchmark evaluation: datasets, policy, optional PRM, N, selectors, budgets. The
    policy is the inherited :class:`~meds3.engines.config.EngineConfig`.

    Attributes:
        datasets: benchmark files (any format :func:`meds3.data.load_questions` reads); the
            default is what ``meds3 data fetch medqa`` writes (docs/data.md).
        dataset_format: loader format of those files.
        limit: first N questions of each file (None: all).
        model, backend, engine, adapter: the policy (:class:`~meds3.engines.config.EngineConfig`).
        prm: PRM directory (None: selectors that need step scores are skipped).
        prm_precision: the PRM scorer's weights (``PRMScorer(precision=...)``): ``auto``
            (float32 on CPU, bfloat16 on CUDA), ``float32``, or ``bfloat16`` (opt-in: ~1.4x
            faster scoring on CPUs with bfloat16 matmuls, scores a few 1e-3 from float32).
        n: responses per question (the paper uses 16).
        selectors: selectors to compare (names from ``meds3.infer.SELECTORS``).
        greedy: also run the greedy baseline (one response at temperature 0).
        budgets: maximum thinking tokens to sweep; ``null`` means no forcing.
        budget: the other forcing settings (minimum, delimiters, answer cue); its
            ``max_thinking_tokens`` comes from ``budgets``.
        temperature, top_p, max_new_tokens, seed: sampling of the N responses.
        chunk_size: questions streamed into the engine together; each question's responses
            are saved (appended, fsync) as soon as they are complete.
        prompt: prompt rendering.
        mcts: also answer by PRM-guided MCTS (needs ``prm``), tabulated as ``prm-mcts``.
        mcts_search: its test-time search (:func:`meds3.infer.mcts.inference_search_config`).
        output_dir: where responses, tables and plots go.
        ray: generate on Ray actors (``ray.enabled``), one engine each, ``ray.unit_size``
            questions of one dataset and run per work unit; the driver alone writes the
            response files and scores with the PRM. The same keys as a rollout's ``ray``.
        paper_columns: column order of ``paper_report.*`` (:mod:`meds3.eval.paper`): dataset names
            and/or presets ``meds3``, ``m1``, ``paper`` (empty, the default: ``paper``, MedS3's
            sets then m1's); datasets not named follow alphabetically.
        paper_reference: YAML of published rows shown quoted in ``paper_report.*``
            (e.g. ``examples/configs/reference/m1_table1.yaml``); None: none.
    """

    datasets: list[str] = field(default_factory=lambda: ["data/eval/medqa.jsonl"])
    dataset_format: str = "auto"
    limit: Optional[int] = None
    prm: Optional[str] = None
    prm_precision: str = "auto"
    n: int = 16
    selectors: list[str] = field(default_factory=lambda: ["majority", "p-vs"])
    greedy: bool = True
    budgets: list[Optional[int]] = field(default_factory=lambda: [None])
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 1024
    seed: Optional[int] = 0
    chunk_size: int = 16
    prompt: PromptConfig = field(default_factory=PromptConfig)
    mcts: bool = False
    mcts_search: SearchConfig = field(default_factory=inference_search_config)
    max_prompt_tokens: int = 1024  # room for the rendered question in the context-length check
    output_dir: str = "runs/eval"
    ray: RayConfig = field(default_factory=lambda: RayConfig(unit_size=16))
    paper_columns: list[str] = field(default_factory=list)
    paper_reference: Optional[str] = None

    def __post_init__(self) -> None:
        from meds3.config import check_finite, check_output_dir
        from meds3.engines.types import SamplingParams

        super().__post_init__()
        check_finite(self)
        check_output_dir(self.output_dir)
        if not self.datasets:
            raise ValueError("datasets must list at least one benchmark file")
        # SamplingParams names temperature, top_p or max_new_tokens when one is out of range.
        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.prm_precision not in PRM_PRECISIONS:
            raise ValueError(f"prm_precision must be one of {', '.join(PRM_PRECISIONS)}, got {self.prm_precision!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        for name in self.selectors:
            get_selector(name)
        if not self.selectors and not self.greedy:
            raise ValueError("nothing to evaluate: no selectors and greedy is false")
        if not self.budgets:
            raise ValueError("budgets must list at least one value (null: no forcing)")
        for b in self.budgets:
            if b is not None and b < 1:
                raise ValueError(f"budgets: each must be >= 1 or null, got {b}")
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets has duplicates: {self.budgets}")
        if self.mcts_search.finish_value != "prm" or self.mcts_search.prm_prior_weight != 1:
            raise ValueError("mcts_search must be a test-time search: finish_value 'prm' and prm_prior_weight 1")
        if self.budget.max_thinking_tokens is not None:
            raise ValueError("set maximum thinking budgets in 'budgets', not budget.max_thinking_tokens")
        self.engine_options()  # a response that cannot fit engine.max_model_len fails at load

    def context_needs(self) -> dict[str, Any]:
        """The longest request of each part of the job (:mod:`meds3.engines.lengths`)."""
        from meds3.engines.lengths import eval_need, search_need

        needs = {"eval": eval_need(self, self.max_prompt_tokens)}
        if self.mcts:
            needs["eval.mcts_search"] = search_need(self.mcts_search, self.max_prompt_tokens, "mcts_search")
        return needs

    def engine_options(self) -> dict[str, Any]:
        """``engine`` with ``max_model_len`` derived from the budgets and caps (vLLM, when not set).

        Raises:
            ConfigError: the longest request cannot fit ``engine.max_model_len``.
        """
        from meds3.engines.lengths import check_fits, with_context

        return with_context(self.engine, self.backend, check_fits(self.context_needs(), self.engine, self.backend))

    def budget_for(self, max_thinking: Optional[int]) -> BudgetConfig:
        """The forcing settings of one sweep point."""
        return BudgetConfig(**{**self.budget.__dict__, "max_thinking_tokens": max_thinking})

    def generation_key(self) -> dict[str, Any]:
        """Settings that change generated responses (a resumed run must keep them): the policy
        (model, adapter path and content hash, backend, the engine options that shape outputs:
        :func:`meds3.resume.engine_key`), sampling, forcing and prompt."""
        from meds3.resume import engine_key
        from meds3.rollout.shipping import dir_sha256

        return {"model": self.model, "adapter": self.adapter, "temperature": self.temperature,
                "top_p": self.top_p, "max_new_tokens": self.max_new_tokens, "seed": self.seed,
                "budget": dict(self.budget.__dict__), "prompt": prompt_key(self.prompt),
                "backend": self.backend, "engine": engine_key(self.engine),
                "adapter_sha256": dir_sha256(self.adapter) if self.adapter and os.path.isdir(self.adapter) else ""}


# Prompt fields added after responses may have been saved: left out of the key at their
# default, so an evaluation saved before they existed still resumes.
_LATER_PROMPT_FIELDS = {"few_shot": 0}


def prompt_key(prompt: PromptConfig) -> dict[str, Any]:
    """The prompt settings that shape responses, for the resume check."""
    return {k: v for k, v in prompt.__dict__.items() if _LATER_PROMPT_FIELDS.get(k, object()) != v}
