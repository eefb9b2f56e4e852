"""Policy SFT: a LoRA adapter on the base model, trained on correct trajectories with the
transformers ``Trainer``; the loss covers the response tokens only.

Output layout (``output_dir``): ``adapter/`` (peft adapter and tokenizer; loads with
``PeftModel.from_pretrained`` and is served per request by both engines), ``merged/`` with
``merge``, ``data.jsonl`` (the records used), ``config.yaml``, ``summary.json``, ``loss.png``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meds3.config import save_config
from meds3.data.errors import DataError
from meds3.locks import locks_output
from meds3.train.common import (
    LoRATrainConfig,
    NoTrainingData,
    attach_logging,
    finish_summary,
    load_tokenizer,
    lora_config,
    model_load_kwargs,
    prepare_for_training,
    resolve_device,
    training_arguments,
    write_meta,
)
from meds3.train.data import SFTDataConfig, iter_trees, sft_dataset, sft_records, write_jsonl

logger = logging.getLogger(__name__)


@dataclass
class PolicyTrainConfig(LoRATrainConfig):
    """Policy SFT job. LoRA defaults: the paper's policy (r=16, alpha=32, lr 2e-4, 1 epoch)."""

    output_dir: str = "runs/policy"
    merge: bool = False  # also save the base model with the adapter merged into ``merged/``
    data: SFTDataConfig = field(default_factory=SFTDataConfig)


@dataclass
class FitResult:
    """What a finished training run holds in memory (for callers that keep using it)."""

    model: Any
    tokenizer: Any
    dataset: Any
    summary: dict[str, Any]


@locks_output("policy training")
def fit_policy(config: PolicyTrainConfig, progress: bool = True) -> FitResult:
    """Train the policy adapter and write the output folder; keep the model in memory.

    Raises:
        DataError: missing or malformed trees, or no correct trajectory in them.
        ModelResolutionError: the base model cannot be found.
    """
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, set_seed

    from meds3.engines.models import resolve_model

    if not config.trees:
        raise DataError("trees", None, "no tree folders given (config key 'trees')")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    records = sft_records(iter_trees(config.trees), config.data, config.prompt)
    if not records:
        raise NoTrainingData(", ".join(config.trees), None, "no correct trajectories to train the policy on")
    write_jsonl(records, out / "data.jsonl")
    base = resolve_model(config.base_model)
    tokenizer = load_tokenizer(base)
    dataset = sft_dataset(records, tokenizer, config.prompt, config.max_length)
    logger.info("policy SFT: %d records from %d questions -> %d examples", len(records),
                len({r["question_id"] for r in records}), len(dataset))

    set_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), **model_load_kwargs(config))
    model = get_peft_model(prepare_for_training(model, config), lora_config(config, "CAUSAL_LM"))
    trainer = Trainer(
        model=model, args=training_arguments(config, out / "trainer", progress),
        train_dataset=dataset.remove_columns(["question_id"]), processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    attach_logging(trainer, progress)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()

    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    write_meta(adapter_dir, "policy", config)
    extra: dict[str, Any] = {"questions": len({r["question_id"] for r in records}),
                             "device": resolve_device(config.device)}
    if config.merge:
        extra["merged_dir"] = str(save_merged(model, tokenizer, out / "merged"))
    summary = finish_summary(out, "policy", trainer, len(records), len(dataset), seconds, adapter_dir, **extra)
    return FitResult(model, tokenizer, dataset, summary)


def save_merged(model, tokenizer, path: Path) -> Path:
    """Save base weights with the adapter merged in (a plain model directory), leaving
    ``model`` itself unmerged."""
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def train_policy(config: PolicyTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train a LoRA policy on the correct trajectories of ``config.trees``.

    Returns:
        The summary (also in ``summary.json``): records, examples, steps, first/last loss,
        losses, seconds, ``adapter_dir`` (and ``merged_dir`` with ``merge``).

    Raises:
        DataError: missing or malformed trees, or no correct trajectory in them.
    """
    return fit_policy(config, progress).summary
