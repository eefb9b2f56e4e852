"""The PRM scorer: every step of a trajectory scored in one forward pass, trajectories batched.

A trajectory is tokenized exactly as in training (:func:`~meds3.train.labels.tokenize_trajectory`)
and the probability of step k is :func:`step_probability` of the logit at step k's last token,
the same function the training loss uses.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.train.common import META_FILE, load_tokenizer, resolve_device
from meds3.train.labels import tokenize_trajectory

logger = logging.getLogger(__name__)


def step_probability(logits):
    """Probability that a step is on a correct path: the sigmoid of its one logit."""
    import torch

    return torch.sigmoid(logits.float())


def load_prm_base(base: str | os.PathLike, tokenizer: Any, dtype=None, **kwargs: Any):
    """The base model with a one-logit token-classification head (random until trained);
    ``kwargs`` go to ``from_pretrained`` (e.g. a quantization config)."""
    import torch
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight MISSING" is expected: the head is new
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(base), num_labels=1,
                                                                dtype=dtype or torch.float32, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def find_adapter_dir(path: str | os.PathLike) -> Path:
    """The adapter folder of a PRM output folder (``<path>/adapter``) or ``path`` itself.

    Raises:
        FileNotFoundError: neither holds an ``adapter_config.json``.
    """
    path = Path(path)
    for cand in (path / "adapter", path):
        if (cand / "adapter_config.json").exists():
            return cand
    raise FileNotFoundError(f"{path}: no PRM adapter (adapter_config.json) here or in {path / 'adapter'}")


class PRMScorer:
    """Scores reasoning steps with a trained PRM.

    Args:
        path: a PRM output folder (from :func:`~meds3.train.prm.train_prm`) or its ``adapter/``.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        batch_size: trajectories per forward pass.
        prompt_config: prompt format; default: the one the PRM was trained with.
        base_model: base model override (default: recorded beside the adapter).

    Raises:
        FileNotFoundError: no adapter at ``path``.
    """

    def __init__(self, path: str | os.PathLike, device: Optional[str] = None, batch_size: int = 8,
                 prompt_config: PromptConfig | None = None, base_model: Optional[str] = None):
        import torch
        from peft import PeftModel

        from meds3.engines.models import resolve_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.adapter_dir = find_adapter_dir(path)
        meta = _read_meta(self.adapter_dir)
        base = base_model or meta.get("base_model")
        if not base:
            base = json.loads((self.adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        self.device = resolve_device(device or "auto")
        self.batch_size = batch_size
        self.prompt_config = prompt_config or PromptConfig(**meta.get("prompt", {}))
        self.tokenizer = load_tokenizer(self.adapter_dir)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = load_prm_base(resolve_model(base), self.tokenizer, dtype=dtype)
        self.model = PeftModel.from_pretrained(model, str(self.adapter_dir)).to(self.device).eval()

    def score(self, question: MedQuestion, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        """One probability per step (Step 0 included) for each trajectory of ``question``.

        Args:
            question: the question answered.
            trajectories: lists of step texts, each starting with Step 0 (the root step),
                as in ``Trajectory.steps``.
        """
        return self.score_batch([(question, trajectories)])[0]

    def score_batch(self, items: Sequence[tuple[MedQuestion, Sequence[Sequence[str]]]]) -> list[list[list[float]]]:
        """:meth:`score` for many questions at once, batching trajectories across questions."""
        flat = [(qi, ti, tokenize_trajectory(self.tokenizer, q, steps, self.prompt_config))
                for qi, (q, trajs) in enumerate(items) for ti, steps in enumerate(trajs)]
        scores = self._score_tokens([t for _, _, t in flat])
        out: list[list[list[float]]] = [[[] for _ in trajs] for _, trajs in items]
        for (qi, ti, _), s in zip(flat, scores):
            out[qi][ti] = s
        return out

    def _score_tokens(self, tokens: list) -> list[list[float]]:
        import torch

        order = sorted(range(len(tokens)), key=lambda i: -len(tokens[i].input_ids))  # little padding
        result: list[list[float]] = [[] for _ in tokens]
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), self.batch_size):
            idx = order[b: b + self.batch_size]
            n = len(tokens[idx[0]].input_ids)
            ids = torch.full((len(idx), n), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), n), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: real tokens keep positions 0..k-1
                k = len(tokens[i].input_ids)
                ids[row, :k] = torch.tensor(tokens[i].input_ids)
                mask[row, :k] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            probs = step_probability(logits.squeeze(-1)).cpu()
            for row, i in enumerate(idx):
                result[i] = probs[row, tokens[i].step_ends].tolist()
        return result

    def score_by_prefixes(self, question: MedQuestion, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        """The slow reference: each step scored by its own forward pass over the prefix that
        ends with it (what a PRM that re-encodes the prefix per step does)."""
        prefixes = [tokenize_trajectory(self.tokenizer, question, steps[: k + 1], self.prompt_config)
                    for steps in trajectories for k in range(len(steps))]
        scores = iter(self._score_tokens(prefixes))
        return [[next(scores)[-1] for _ in steps] for steps in trajectories]


def _read_meta(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / META_FILE
    if not path.exists():
        logger.warning("%s: no %s; using the adapter's base model and the default prompt", adapter_dir, META_FILE)
        return {}
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("kind") not in (None, "prm"):
        raise ValueError(f"{adapter_dir}: adapter kind is {meta.get('kind')!r}, not a PRM")
    return meta
