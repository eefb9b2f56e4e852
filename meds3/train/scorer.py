"""The PRM scorer: every step of a trajectory scored in one forward pass, trajectories batched.

A trajectory is tokenized exactly as in training (:func:`~meds3.train.labels.tokenize_trajectory`)
and the probability of step k is :func:`step_probability` of the logit at step k's last token,
the same function the training loss uses.

The responses to one question share their first tokens (the chat-templated question and Step 0,
often more), so one forward pass encodes them once: the token sequences of a question are laid
out as a prefix tree in one row (:func:`pack_prefix_tree`), each token at its position in its
own sequence and attending to exactly the tokens before it in that sequence (a 4D attention
mask). With a causal model every logit is the one the trajectory alone would get (up to float
rounding), while the question is encoded once per row instead of once per response. On float32
weights the LoRA adapter is merged into the base for inference (scores move by ~1e-7).

``precision="bfloat16"`` (opt-in) rounds the merged weights to bfloat16 once: faster on CPUs with
bfloat16 matmuls (AVX-512 BF16, AMX), with scores a few 1e-3 from float32 (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.train.common import META_FILE, load_tokenizer, resolve_device
from meds3.train.labels import tokenize_trajectory

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "bfloat16")


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


@dataclass(frozen=True)
class PackedTree:
    """Token sequences laid out as a prefix tree in one row (see :func:`pack_prefix_tree`).

    Attributes:
        input_ids: the tree's tokens in depth-first order, a prefix shared by several sequences once.
        positions: each token's position in its own sequence (its depth in the tree).
        paths: for each sequence, the row index of each of its tokens.
        ends: for each token, the end of its subtree: the tokens after it in the sequences that
            hold it are exactly ``ends[b] > a > b`` (depth-first order keeps a subtree contiguous),
            so token a may attend to token b iff ``b <= a < ends[b]``.
    """

    input_ids: list[int]
    positions: list[int]
    paths: list[list[int]]
    ends: list[int]


def pack_prefix_tree(sequences: Sequence[Sequence[int]]) -> PackedTree:
    """Lay out token sequences as a prefix tree: a prefix shared by several sequences appears once.

    Sorted, a sequence shares with its predecessor the longest prefix it shares with any earlier
    one, so each sequence adds only its tokens after that prefix (identical sequences add none),
    and the tokens come out in depth-first order.
    """
    ids: list[int] = []
    positions: list[int] = []
    paths: list[list[int]] = [[] for _ in sequences]
    prev: Optional[int] = None
    for i in sorted(range(len(sequences)), key=lambda i: list(sequences[i])):
        seq = sequences[i]
        shared = 0
        if prev is not None:
            before = sequences[prev]
            limit = min(len(seq), len(before))
            while shared < limit and seq[shared] == before[shared]:
                shared += 1
        path = paths[prev][:shared] if prev is not None else []
        for depth in range(shared, len(seq)):
            path.append(len(ids))
            ids.append(int(seq[depth]))
            positions.append(depth)
        paths[i] = path
        prev = i
    ends = list(range(1, len(ids) + 1))
    for path in paths:  # a path's indices increase: its last token ends the subtree of each of its tokens
        for node in path:
            ends[node] = max(ends[node], path[-1] + 1)
    return PackedTree(ids, positions, paths, ends)


class PRMScorer:
    """Scores reasoning steps with a trained PRM.

    Args:
        path: a PRM output folder (from :func:`~meds3.train.prm.train_prm`) or its ``adapter/``.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        batch_size: trajectories per forward pass.
        prompt_config: prompt format; default: the one the PRM was trained with.
        base_model: base model override (default: recorded beside the adapter).
        precision: the weights' dtype: ``"auto"`` (float32 with the adapter merged on CPU,
            bfloat16 with the adapter separate on CUDA), ``"float32"`` or ``"bfloat16"`` (both
            merge the adapter in float32 first; bfloat16 then rounds the merged weights once).

    Raises:
        FileNotFoundError: no adapter at ``path``.
        ValueError: ``batch_size`` below 1 or an unknown ``precision``.
    """

    def __init__(self, path: str | os.PathLike, device: Optional[str] = None, batch_size: int = 8,
                 prompt_config: PromptConfig | None = None, base_model: Optional[str] = None,
                 precision: str = "auto"):
        import torch
        from peft import PeftModel

        from meds3.engines.models import resolve_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        from meds3.hub import resolve_hub

        self.adapter_dir = find_adapter_dir(resolve_hub(path))  # a local folder, or a Hub id's snapshot
        meta = _read_meta(self.adapter_dir)
        base = base_model or meta.get("base_model")
        if not base:
            base = json.loads((self.adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        self.device = resolve_device(device or "auto")
        self.batch_size = batch_size
        self.prompt_config = prompt_config or PromptConfig(**meta.get("prompt", {}))
        self.tokenizer = load_tokenizer(self.adapter_dir)
        self.precision = precision
        dtype = torch.bfloat16 if precision == "auto" and self.device == "cuda" else torch.float32
        model = PeftModel.from_pretrained(load_prm_base(resolve_model(base), self.tokenizer, dtype=dtype),
                                          str(self.adapter_dir))
        if dtype == torch.float32:
            # why: unmerged, the LoRA matmuls and their elementwise ops took about a quarter of the
            # CPU scoring time; merged float32 weights move the scores by ~1e-7 (bf16 would round
            # the merged sum, so by default CUDA keeps the adapter separate)
            model = model.merge_and_unload()
        if precision == "bfloat16":
            model = model.to(torch.bfloat16)  # merged in float32 above: the sum is rounded once
        self.model = model.to(self.device).eval()

    def score(self, question: MedQuestion, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        """One probability per step (Step 0 included) for each trajectory of ``question``.

        Args:
            question: the question answered.
            trajectories: lists of step texts, each starting with Step 0 (the root step),
                as in ``Trajectory.steps``.
        """
        return self.score_batch([(question, trajectories)])[0]

    def score_batch(self, items: Sequence[tuple[MedQuestion, Sequence[Sequence[str]]]]) -> list[list[list[float]]]:
        """:meth:`score` for many questions at once, batching trajectories across questions.

        Trajectories of the same question object (several items may hold it, as in a search
        round) share their common token prefix in the forward pass.
        """
        flat = [(qi, ti, self._tokenize(q, steps))
                for qi, (q, trajs) in enumerate(items) for ti, steps in enumerate(trajs)]
        groups: dict[int, list[int]] = {}
        for k, (qi, _, _) in enumerate(flat):
            groups.setdefault(id(items[qi][0]), []).append(k)
        scores = self._score_tokens([t for _, _, t in flat], list(groups.values()))
        out: list[list[list[float]]] = [[[] for _ in trajs] for _, trajs in items]
        for (qi, ti, _), s in zip(flat, scores):
            out[qi][ti] = s
        return out

    def _tokenize(self, question: MedQuestion, steps: Sequence[str]):
        """One trajectory's ids and step-end positions, as the PRM was trained (a subclass for
        another training layout overrides this and :meth:`_step_probabilities`)."""
        return tokenize_trajectory(self.tokenizer, question, steps, self.prompt_config)

    def _step_probabilities(self, logits):
        """Per-token probabilities from the model's ``(rows, seq, num_labels)`` logits."""
        return step_probability(logits.squeeze(-1))

    def _score_tokens(self, tokens: list, groups: Optional[list[list[int]]] = None) -> list[list[float]]:
        """Step probabilities of tokenized trajectories; the trajectories of a group (indices into
        ``tokens``; default: each alone) share one row, at most ``batch_size`` to a row and to a
        forward pass."""
        import torch

        groups = groups if groups is not None else [[i] for i in range(len(tokens))]
        rows = [g[k: k + self.batch_size] for g in groups for k in range(0, len(g), self.batch_size)]
        trees = [pack_prefix_tree([tokens[i].input_ids for i in row]) for row in rows]
        order = sorted(range(len(rows)), key=lambda r: -len(trees[r].input_ids))  # little padding
        passes: list[list[int]] = []
        count = self.batch_size
        for r in order:
            if count + len(rows[r]) > self.batch_size:
                passes.append([])
                count = 0
            passes[-1].append(r)
            count += len(rows[r])
        result: list[list[float]] = [[] for _ in tokens]
        dtype = next(self.model.parameters()).dtype
        for batch in passes:
            n = len(trees[batch[0]].input_ids)
            ids = torch.full((len(batch), n), self.tokenizer.pad_token_id, dtype=torch.long)
            positions = torch.zeros((len(batch), n), dtype=torch.long)
            ends = torch.arange(1, n + 1).repeat(len(batch), 1)  # padding: a subtree of its own
            for b, r in enumerate(batch):
                tree = trees[r]
                k = len(tree.input_ids)
                ids[b, :k] = torch.tensor(tree.input_ids)
                positions[b, :k] = torch.tensor(tree.positions)
                ends[b, :k] = torch.tensor(tree.ends)
            query = torch.arange(n).view(1, n, 1)
            allowed = (torch.arange(n).view(1, 1, n) <= query) & (query < ends.unsqueeze(1))  # [rows, q, k]
            mask = torch.zeros((len(batch), 1, n, n), dtype=dtype)
            mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)  # additive: 0 or -inf-like
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    position_ids=positions.to(self.device)).logits
            probs = self._step_probabilities(logits).cpu()
            for b, r in enumerate(batch):
                for i, path in zip(rows[r], trees[r].paths):
                    result[i] = probs[b, [path[e] for e in tokens[i].step_ends]].tolist()
        return result

    def score_by_prefixes(self, question: MedQuestion, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        """The slow reference: each step scored by its own forward pass over the prefix that
        ends with it (what a PRM that re-encodes the prefix per step does); nothing shared."""
        prefixes = [self._tokenize(question, steps[: k + 1])
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
