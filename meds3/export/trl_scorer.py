"""Scoring with a PRM trained by TRL's ``PRMTrainer`` on the stepwise export.

Such a PRM is a full token-classification checkpoint (``config.json`` and weights, no meds3
adapter), usually with two labels (TRL's default: cross-entropy over "bad"/"good" at the last
token of each step's separator). :class:`TRLPRMScorer` is a :class:`~meds3.train.scorer.PRMScorer`
that tokenizes a trajectory the way TRL did (:func:`~meds3.export.prm.stepwise_tokens` on the
:mod:`meds3.export.prm` layout) and reads P(good) there, so search, best-of-N selection and
``score_batch`` use it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.export.prm import stepwise_completions, stepwise_prompt, stepwise_tokens
from meds3.train.common import load_tokenizer, resolve_device
from meds3.train.scorer import PRMScorer, step_probability

TRL_STEP_SEPARATOR = "\n"  # the default of TRL's PRMConfig.step_separator


class TRLPRMScorer(PRMScorer):
    """Scores steps with a token-classification PRM trained on the stepwise export.

    Args:
        path: the folder ``PRMTrainer.save_model`` wrote (``config.json``, weights, tokenizer).
        step_separator: the ``PRMConfig.step_separator`` it was trained with (TRL's default ``"\\n"``).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        batch_size: trajectories per forward pass.
        prompt_config: the prompt format the export used (default :class:`PromptConfig`).

    Raises:
        FileNotFoundError: no ``config.json`` at ``path``.
        ValueError: a head with other than 1 or 2 labels, an empty separator or a bad batch size.
    """

    def __init__(self, path: str | os.PathLike, step_separator: str = TRL_STEP_SEPARATOR,
                 device: Optional[str] = None, batch_size: int = 8, prompt_config: PromptConfig | None = None):
        import torch
        from transformers import AutoModelForTokenClassification

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not step_separator:
            raise ValueError("step_separator must not be empty")
        self.model_dir = Path(path)
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.model_dir}: no token-classification checkpoint (config.json) here")
        self.device = resolve_device(device or "auto")
        self.batch_size = batch_size
        self.prompt_config = prompt_config or PromptConfig()
        self.step_separator = step_separator
        self.tokenizer = load_tokenizer(self.model_dir)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForTokenClassification.from_pretrained(str(self.model_dir), dtype=dtype)
        if model.config.num_labels not in (1, 2):
            raise ValueError(f"{self.model_dir}: the head has {model.config.num_labels} labels; "
                             "a PRM has 1 (sigmoid) or 2 (TRL: bad, good)")
        self.model = model.to(self.device).eval()

    def _tokenize(self, question: MedQuestion, steps: Sequence[str]):
        if not steps:
            raise ValueError("a trajectory needs at least one step (Step 0)")
        return stepwise_tokens(self.tokenizer, stepwise_prompt(question, steps[0], self.prompt_config),
                               stepwise_completions(steps, self.prompt_config), self.step_separator)

    def _step_probabilities(self, logits):
        """P(good): the softmax's label-1 share for TRL's two-label head, the sigmoid for one label."""
        if logits.shape[-1] == 2:
            return logits.float().softmax(-1)[..., 1]
        return step_probability(logits.squeeze(-1))
