"""The evolution loop's config: the shared choices once, each stage's own config beneath."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from meds3.eval import EvalConfig
from meds3.rollout import RolloutConfig
from meds3.train import PolicyTrainConfig, PRMTrainConfig

# Fields of the stage configs that the loop fills in itself (paths, models, adapters);
# values given for them in the stage sections are replaced.
LOOP_FIELDS = {
    "rollout": ("seeds", "output_dir", "model", "backend", "engine", "adapter", "limit"),
    "policy": ("trees", "base_model", "output_dir"),
    "prm": ("trees", "base_model", "output_dir"),
    "eval": ("datasets", "model", "backend", "engine", "adapter", "prm", "output_dir"),
}


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
    backend: Literal["transformers", "vllm"] = "transformers"  # generation engine of rollout and eval
    engine: dict[str, Any] = field(default_factory=dict)  # build_engine options
    seeds: list[str] = field(default_factory=lambda: ["seed_data/clinical_calc.jsonl"])  # seed question files
    seed_format: str = "auto"
    questions_per_iteration: int = 8  # seed questions searched in each iteration (new ones each time)
    held_out: int = 24  # seed questions kept out of every rollout and evaluated on (0: none)
    eval_datasets: list[str] = field(default_factory=list)  # extra benchmark files evaluated each iteration
    eval_base: bool = True  # also evaluate the base policy (iteration 0) for the base-vs-evolved table
    accumulate_trees: bool = True  # train iteration k on the trees of iterations 1..k (else k only)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    policy: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    prm: PRMTrainConfig = field(default_factory=PRMTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
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
