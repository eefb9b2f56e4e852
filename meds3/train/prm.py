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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from meds3.locks import locks_output
from meds3.train.common import LoRATrainConfig, TrainResult, model_load_kwargs
from meds3.train.data import PRMDataConfig, iter_trees, prm_dataset, prm_records
from meds3.train.labels import IGNORE_INDEX
from meds3.train.scorer import PRMScorer, load_prm_base, step_probability  # noqa: F401  (PRMScorer re-exported)
from meds3.train.trainer import FitResult, LoRARecipe, fit_lora

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


class PRMRecipe(LoRARecipe):
    """PRM records (finished trajectories with step values), a one-logit token-classification
    head, :func:`prm_loss` at the step ends."""

    kind = "prm"
    task_type = "TOKEN_CLS"  # peft then saves the score head with the adapter
    nothing_to_train = "no finished trajectories to train the PRM on"

    def records(self, config: PRMTrainConfig) -> list[dict[str, Any]]:
        return prm_records(iter_trees(config.trees), config.data, config.prompt)

    def dataset(self, config: PRMTrainConfig, records: list[dict[str, Any]], tokenizer):
        return prm_dataset(records, tokenizer, config.prompt, config.max_length, config.data.label_root)

    def record_fields(self, config: PRMTrainConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"correct_records": sum(r["verdict"] is True for r in records),
                "questions": len({r["question_id"] for r in records}), "loss_type": config.loss}

    def model(self, config: PRMTrainConfig, base: Path, tokenizer):
        kwargs = model_load_kwargs(config)
        return load_prm_base(base, tokenizer, kwargs.pop("dtype"), **kwargs)

    def trainer_options(self, config: PRMTrainConfig, tokenizer) -> dict[str, Any]:
        def compute_loss(outputs, labels, num_items_in_batch=None):
            return prm_loss(outputs.logits, labels, config.loss, config.threshold, num_items_in_batch)

        return {"data_collator": lambda feats: collate_prm(feats, tokenizer.pad_token_id),
                "compute_loss_func": compute_loss}

    def meta(self, config: PRMTrainConfig) -> dict[str, Any]:
        return {"probability": "sigmoid", "loss": config.loss, "label_root": config.data.label_root}

    def output_dir(self, out: Path, adapter_dir: Path) -> Path:
        return out  # PRMScorer loads the output folder


@locks_output("PRM training")
def fit_prm(config: PRMTrainConfig, progress: bool = True) -> FitResult:
    """Train the PRM adapter and write the output folder; keep the model in memory.

    Raises:
        DataError: missing or malformed trees.
        NoTrainingData: no finished trajectory in them.
    """
    return fit_lora(PRMRecipe(), config, progress)


def train_prm(config: PRMTrainConfig, progress: bool = True) -> TrainResult:
    """Train a LoRA PRM on the trajectories of ``config.trees``.

    Returns:
        The result (also in ``summary.json``): ``output_dir`` is the PRM folder
        (``PRMScorer(output_dir)`` loads it); records, examples, steps, first/last loss in
        ``metrics``, losses, seconds, ``adapter_dir``.

    Raises:
        DataError: missing or malformed trees.
        NoTrainingData: no finished trajectory in them.
    """
    return fit_prm(config, progress).result
