"""Policy SFT: a LoRA adapter on the base model, trained on correct trajectories with the
transformers ``Trainer``; the loss covers the response tokens only.

Output layout (``output_dir``): ``adapter/`` (peft adapter and tokenizer; loads with
``PeftModel.from_pretrained`` and is served per request by both engines), ``merged/`` with
``merge``, ``data.jsonl`` (the records used), ``config.yaml``, ``summary.json``, ``loss.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meds3.locks import locks_output
from meds3.train.common import LoRATrainConfig, TrainResult, model_load_kwargs
from meds3.train.data import SFTDataConfig, iter_trees, sft_dataset, sft_records
from meds3.train.trainer import FitResult, LoRARecipe, fit_lora

logger = logging.getLogger(__name__)


@dataclass
class PolicyTrainConfig(LoRATrainConfig):
    """Policy SFT job. LoRA defaults: the paper's policy (r=16, alpha=32, lr 2e-4, 1 epoch)."""

    output_dir: str = "runs/policy"
    merge: bool = False  # also save the base model with the adapter merged into ``merged/``
    data: SFTDataConfig = field(default_factory=SFTDataConfig)


class PolicyRecipe(LoRARecipe):
    """SFT records (correct trajectories), a causal LM head, the LM loss on response tokens."""

    kind = "policy"
    task_type = "CAUSAL_LM"
    nothing_to_train = "no correct trajectories to train the policy on"

    def records(self, config: PolicyTrainConfig) -> list[dict[str, Any]]:
        return sft_records(iter_trees(config.trees), config.data, config.prompt)

    def dataset(self, config: PolicyTrainConfig, records: list[dict[str, Any]], tokenizer):
        return sft_dataset(records, tokenizer, config.prompt, config.max_length)

    def model(self, config: PolicyTrainConfig, base: Path, tokenizer):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(base), **model_load_kwargs(config))

    def after_save(self, config: PolicyTrainConfig, model, tokenizer, out: Path) -> dict[str, Any]:
        return {"merged_dir": str(save_merged(model, tokenizer, out / "merged"))} if config.merge else {}


@locks_output("policy training")
def fit_policy(config: PolicyTrainConfig, progress: bool = True) -> FitResult:
    """Train the policy adapter and write the output folder; keep the model in memory.

    Raises:
        DataError: missing or malformed trees, or no correct trajectory in them.
        ModelResolutionError: the base model cannot be found.
    """
    return fit_lora(PolicyRecipe(), config, progress)


def save_merged(model, tokenizer, path: Path) -> Path:
    """Save base weights with the adapter merged in (a plain model directory), leaving
    ``model`` itself unmerged."""
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def train_policy(config: PolicyTrainConfig, progress: bool = True) -> TrainResult:
    """Train a LoRA policy on the correct trajectories of ``config.trees``.

    Returns:
        The result (also in ``summary.json``): ``output_dir`` is the adapter folder; records,
        examples, steps, first/last loss in ``metrics``, losses, seconds (and ``merged_dir``
        with ``merge``).

    Raises:
        DataError: missing or malformed trees.
        NoTrainingData: no correct trajectory in them.
    """
    return fit_policy(config, progress).result
