"""The process reward model: a token-classification model (one logit per token) with LoRA,
trained so that the sigmoid of the logit at each step's last token predicts the step's
backed-up value.

Why token classification: the backbone stays causal, so one forward pass over a whole
trajectory yields every step's score, and the score at step k equals the score of the prefix
ending at step k; ``AutoModelForTokenClassification`` builds the head for any causal
architecture, and peft's ``TOKEN_CLS`` task saves the head with the adapter. Training and
scoring share :func:`~meds3.train.scorer.step_probability` (the MedS3 code trained on the
sigmoid of one logit but scored with a softmax over two).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from meds3.train.data import PRMDataConfig, iter_trees, prm_dataset, prm_records, write_jsonl
from meds3.train.labels import IGNORE_INDEX
from meds3.train.policy import FitResult
from meds3.train.scorer import PRMScorer, load_prm_base, step_probability  # noqa: F401  (PRMScorer re-exported)

logger = logging.getLogger(__name__)


@dataclass
class PRMTrainConfig(LoRATrainConfig):
    """PRM job. LoRA defaults: the paper's PRM (r=64, alpha=128, lr 2e-4, 1 epoch)."""

    output_dir: str = "runs/prm"
    r: int = 64
    alpha: int = 128
    loss: Literal["bce", "hard", "mse"] = "bce"  # bce: soft-label BCE; hard: BCE on value >= threshold
    threshold: float = 0.5  # for loss "hard"
    data: PRMDataConfig = field(default_factory=PRMDataConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


def prm_loss(logits, labels, loss: str = "bce", threshold: float = 0.5, num_items_in_batch=None):
    """Loss over labelled positions (``labels != IGNORE_INDEX``) of per-token logits.

    Args:
        logits: ``(batch, seq)`` or ``(batch, seq, 1)`` raw scores.
        labels: ``(batch, seq)`` step values in [0, 1], :data:`IGNORE_INDEX` elsewhere.
        loss: ``"bce"`` (soft labels), ``"hard"`` (labels >= ``threshold`` -> 1), ``"mse"``
            (squared error of the probability).
        num_items_in_batch: labelled positions in the whole accumulated batch (the
            ``Trainer`` passes it so gradient accumulation averages over positions).

    Returns:
        A scalar tensor: the mean loss per labelled position.
    """
    import torch
    import torch.nn.functional as F

    if logits.dim() == 3:
        logits = logits.squeeze(-1)
    logits = logits.float()
    labels = labels.to(logits.device).float()
    mask = labels != IGNORE_INDEX
    x, y = logits[mask], labels[mask]
    if loss == "hard":
        y = (y >= threshold).float()
    if loss == "mse":
        per = (step_probability(x) - y) ** 2
    elif loss in ("bce", "hard"):
        per = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # = BCE of step_probability(x)
    else:
        raise ValueError(f"unknown PRM loss {loss!r}; use bce, hard or mse")
    denom = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(per.device)
    return per.sum() / torch.clamp(torch.as_tensor(denom, dtype=per.dtype, device=per.device), min=1)


def collate_prm(features: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Right-pad a PRM batch: ids with ``pad_token_id``, float labels with IGNORE_INDEX."""
    import torch

    n = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), n), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(features), n), dtype=torch.long)
    labels = torch.full((len(features), n), float(IGNORE_INDEX), dtype=torch.float32)
    for i, f in enumerate(features):
        k = len(f["input_ids"])
        ids[i, :k] = torch.tensor(f["input_ids"])
        mask[i, :k] = 1
        labels[i, :k] = torch.tensor(f["labels"], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@locks_output("PRM training")
def fit_prm(config: PRMTrainConfig, progress: bool = True) -> FitResult:
    """Train the PRM adapter and write the output folder; keep the model in memory.

    Raises:
        DataError: missing or malformed trees, or no trajectory in them.
    """
    from peft import get_peft_model
    from transformers import Trainer, set_seed

    from meds3.engines.models import resolve_model

    if not config.trees:
        raise DataError("trees", None, "no tree folders given (config key 'trees')")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    records = prm_records(iter_trees(config.trees), config.data, config.prompt)
    if not records:
        raise NoTrainingData(", ".join(config.trees), None, "no finished trajectories to train the PRM on")
    write_jsonl(records, out / "data.jsonl")
    base = resolve_model(config.base_model)
    tokenizer = load_tokenizer(base)
    dataset = prm_dataset(records, tokenizer, config.prompt, config.max_length, config.data.label_root)
    n_pos = sum(r["verdict"] is True for r in records)
    logger.info("PRM: %d records (%d correct, %d not) from %d questions -> %d examples", len(records), n_pos,
                len(records) - n_pos, len({r["question_id"] for r in records}), len(dataset))

    set_seed(config.seed)  # the score head is initialised randomly
    kwargs = model_load_kwargs(config)
    base_model = load_prm_base(base, tokenizer, kwargs.pop("dtype"), **kwargs)
    model = get_peft_model(prepare_for_training(base_model, config), lora_config(config, "TOKEN_CLS"))

    def compute_loss(outputs, labels, num_items_in_batch=None):
        return prm_loss(outputs.logits, labels, config.loss, config.threshold, num_items_in_batch)

    trainer = Trainer(
        model=model, args=training_arguments(config, out / "trainer", progress),
        train_dataset=dataset.remove_columns(["question_id"]), processing_class=tokenizer,
        data_collator=lambda feats: collate_prm(feats, tokenizer.pad_token_id), compute_loss_func=compute_loss,
    )
    attach_logging(trainer, progress)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()

    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    write_meta(adapter_dir, "prm", config, probability="sigmoid", loss=config.loss,
               label_root=config.data.label_root)
    summary = finish_summary(out, "prm", trainer, len(records), len(dataset), seconds, adapter_dir,
                             correct_records=n_pos, questions=len({r["question_id"] for r in records}),
                             loss_type=config.loss, device=resolve_device(config.device))
    return FitResult(model, tokenizer, dataset, summary)


def train_prm(config: PRMTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train a LoRA PRM on the trajectories of ``config.trees`` (``PRMScorer(output_dir)``
    loads the result).

    Returns:
        The summary (also in ``summary.json``): records, examples, steps, first/last loss,
        losses, seconds, ``adapter_dir``.

    Raises:
        DataError: missing or malformed trees, or no trajectory in them.
    """
    return fit_prm(config, progress).summary
