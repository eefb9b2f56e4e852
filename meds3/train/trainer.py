"""The steps every LoRA trainer runs, once: check the trees, save the config, build and write
the records, tokenizer, dataset, the transformers ``Trainer``, save the adapter and its meta,
write the summary. A trainer (:mod:`meds3.train.policy`, :mod:`meds3.train.prm`) is a
:class:`LoRARecipe`: it brings only what differs, its records, its model head and its loss.

Output layout (``config.output_dir``): ``adapter/`` (peft adapter, tokenizer and
``meds3_train.json``), ``data.jsonl`` (the records used), ``config.yaml``, ``summary.json``,
``loss.png``; ``trainer/`` holds what transformers writes (tensorboard events with
``report_to``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meds3.config import save_config
from meds3.data.errors import DataError
from meds3.train.common import (
    LoRATrainConfig,
    NoTrainingData,
    TrainResult,
    attach_logging,
    attach_logging_dir,
    finish_summary,
    load_tokenizer,
    lora_config,
    prepare_for_training,
    resolve_device,
    training_arguments,
    write_meta,
)

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a finished training run holds in memory (for callers that keep using it)."""

    model: Any  # the peft model, in eval mode
    tokenizer: Any
    dataset: Any  # the tokenized training set
    result: TrainResult  # also in summary.json


class LoRARecipe:
    """What one kind of LoRA trainer brings to :func:`fit_lora`; everything else is shared.

    Subclasses set ``kind`` (``"policy"``/``"prm"``), ``task_type`` (the peft task, which
    decides what the adapter saves beside the LoRA weights) and ``nothing_to_train`` (why an
    empty record list is no run), and implement :meth:`records`, :meth:`dataset` and
    :meth:`model`; the other hooks have defaults.
    """

    kind: str = ""
    task_type: str = "CAUSAL_LM"
    nothing_to_train: str = "no trajectories to train on"

    def records(self, config: LoRATrainConfig) -> list[dict[str, Any]]:
        """The training records read from ``config.trees`` (written to ``data.jsonl``)."""
        raise NotImplementedError

    def dataset(self, config: LoRATrainConfig, records: list[dict[str, Any]], tokenizer):
        """The tokenized ``datasets.Dataset`` (``input_ids``, ``attention_mask``, ``labels``,
        ``question_id``)."""
        raise NotImplementedError

    def model(self, config: LoRATrainConfig, base: Path, tokenizer):
        """The base model with this trainer's head, before LoRA is added."""
        raise NotImplementedError

    def trainer_options(self, config: LoRATrainConfig, tokenizer) -> dict[str, Any]:
        """Keyword arguments of ``transformers.Trainer``: the data collator and, where the model's
        own loss is not the one to train, ``compute_loss_func``."""
        from transformers import DataCollatorForSeq2Seq

        return {"data_collator": DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)}

    def record_fields(self, config: LoRATrainConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
        """:class:`TrainResult` fields counted from the records (logged before training)."""
        return {"questions": len({r["question_id"] for r in records})}

    def meta(self, config: LoRATrainConfig) -> dict[str, Any]:
        """Extra keys of ``meds3_train.json`` beside the adapter (how to score with it)."""
        return {}

    def after_save(self, config: LoRATrainConfig, model, tokenizer, out: Path) -> dict[str, Any]:
        """Work after the adapter is saved (the policy's merged copy); returns more
        :class:`TrainResult` fields."""
        return {}

    def output_dir(self, out: Path, adapter_dir: Path) -> Path:
        """What a later stage loads: the adapter folder unless the kind says otherwise."""
        return adapter_dir


def fit_lora(recipe: LoRARecipe, config: LoRATrainConfig, progress: bool = True) -> FitResult:
    """Run one LoRA training job of ``recipe``'s kind and write the output folder.

    The caller holds the output lock (:func:`meds3.locks.locks_output`).

    Returns:
        The model (eval mode), tokenizer, dataset and the :class:`TrainResult`.

    Raises:
        DataError: no trees given, or missing or malformed trees.
        NoTrainingData: the trees hold no record for this trainer.
        ModelResolutionError: the base model cannot be found.
    """
    from peft import get_peft_model
    from transformers import Trainer, set_seed

    from meds3.engines.models import resolve_model
    from meds3.train.data import write_jsonl

    if not config.trees:
        raise DataError("trees", None, "no tree folders given (config key 'trees')")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    records = recipe.records(config)
    if not records:
        raise NoTrainingData(", ".join(config.trees), None, recipe.nothing_to_train)
    write_jsonl(records, out / "data.jsonl")
    base = resolve_model(config.base_model)
    tokenizer = load_tokenizer(base)
    dataset = recipe.dataset(config, records, tokenizer)
    counts = recipe.record_fields(config, records)
    logger.info("%s: %d records (%s) -> %d examples", recipe.kind, len(records),
                ", ".join(f"{k} {v}" for k, v in counts.items()), len(dataset))

    set_seed(config.seed)  # LoRA weights (and the PRM's score head) are initialised randomly
    model = recipe.model(config, base, tokenizer)
    model = get_peft_model(prepare_for_training(model, config), lora_config(config, recipe.task_type))
    trainer = Trainer(model=model, args=training_arguments(config, out / "trainer", progress),
                      train_dataset=dataset.remove_columns(["question_id"]), processing_class=tokenizer,
                      **recipe.trainer_options(config, tokenizer))
    attach_logging(trainer, progress)
    attach_logging_dir(trainer, config)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()

    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    write_meta(adapter_dir, recipe.kind, config, **recipe.meta(config))
    extra = {**counts, "device": resolve_device(config.device), **recipe.after_save(config, model, tokenizer, out)}
    result = finish_summary(out, recipe.kind, trainer, len(records), len(dataset), seconds, adapter_dir,
                            recipe.output_dir(out, adapter_dir), **extra)
    return FitResult(model, tokenizer, dataset, result)

