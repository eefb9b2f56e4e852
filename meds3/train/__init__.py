"""Training from search trees: SFT and PRM datasets, the LoRA policy and PRM trainers, and
the PRM scorer.

- :mod:`meds3.train.data`: records from trees (``sft_records``, ``prm_records``), JSONL,
  tokenized ``datasets.Dataset`` objects.
- :mod:`meds3.train.labels`: joint tokenization and the step-end label positions (shared by
  the PRM trainer and the scorer).
- :mod:`meds3.train.trainer`: the steps both trainers share (``fit_lora``, ``LoRARecipe``);
  both return a ``TrainResult`` (:mod:`meds3.train.common`).
- :mod:`meds3.train.policy`: ``train_policy`` (transformers ``Trainer`` + peft LoRA).
- :mod:`meds3.train.prm`: ``train_prm``; :mod:`meds3.train.scorer`: ``PRMScorer``.
"""

from meds3.train.common import LoRATrainConfig, NoTrainingData, TrainResult
from meds3.train.data import (
    PRMDataConfig,
    SFTDataConfig,
    iter_trees,
    prm_dataset,
    prm_records,
    read_jsonl,
    sft_dataset,
    sft_records,
    write_jsonl,
)
from meds3.train.labels import (
    IGNORE_INDEX,
    TrajectoryTokens,
    sft_labels,
    step_labels,
    token_index_at,
    tokenize_trajectory,
)
from meds3.train.policy import PolicyTrainConfig, fit_policy, train_policy
from meds3.train.prm import PRMTrainConfig, fit_prm, prm_loss, train_prm
from meds3.train.scorer import PRMScorer, step_probability
from meds3.train.trainer import FitResult, LoRARecipe, fit_lora

__all__ = [
    "FitResult", "IGNORE_INDEX", "LoRARecipe", "LoRATrainConfig", "NoTrainingData", "PRMDataConfig", "PRMScorer",
    "PRMTrainConfig", "PolicyTrainConfig",
    "SFTDataConfig", "TrajectoryTokens", "fit_policy", "fit_prm", "iter_trees", "prm_dataset", "prm_loss",
    "prm_records", "read_jsonl", "sft_dataset", "sft_labels", "sft_records", "step_labels", "step_probability",
    "TrainResult", "fit_lora", "token_index_at", "tokenize_trajectory", "train_policy", "train_prm", "write_jsonl",
]
