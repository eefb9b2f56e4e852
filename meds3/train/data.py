"""Training examples from search trees: SFT records from correct trajectories, PRM records
from correct and incorrect ones with each step's backed-up value as a soft label.

Records are plain dicts (JSON lines on disk); :func:`sft_dataset` and :func:`prm_dataset`
tokenize them into ``datasets.Dataset`` objects with the label placement of
:mod:`meds3.train.labels`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from meds3.data.errors import DataError
from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.io import atomic_open
from meds3.mcts.node import Tree
from meds3.mcts.trajectories import extract_trajectories
from meds3.train.labels import IGNORE_INDEX, sft_labels, step_labels, tokenize_trajectory

logger = logging.getLogger(__name__)


@dataclass
class SFTDataConfig:
    """Which correct trajectories become policy SFT examples."""

    top_k: Optional[int] = None  # keep the k paths per question with the highest minimum step value
    dedupe: bool = True  # drop trajectories of a question whose step texts repeat an earlier one
    max_per_question: Optional[int] = None  # then keep at most this many per question (node order)

    def __post_init__(self) -> None:
        for name in ("top_k", "max_per_question"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {v}")


@dataclass
class PRMDataConfig:
    """Which trajectories become PRM examples and how steps are labelled."""

    include_neg: bool = True  # incorrect and unverifiable trajectories too (MedS3: pos and neg)
    dedupe: bool = True  # drop repeated step sequences of a question
    max_pos_per_question: Optional[int] = None
    max_neg_per_question: Optional[int] = None
    label_root: bool = False  # label Step 0 too (its value is the question's solve rate, not a step's)
    require_pos_and_neg: bool = True  # only questions with a correct and an incorrect path (MedS3 --filter_invalid)

    def __post_init__(self) -> None:
        for name in ("max_pos_per_question", "max_neg_per_question"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {v}")


def iter_trees(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Iterator[Tree]:
    """Trees from rollout output folders (``<dir>/trees/``), tree folders, shard files or Hub
    datasets of trees (``hf://datasets/owner/name`` or a bare ``owner/name``, :mod:`meds3.hub`).

    A folder gives each question once: its newest stored tree (a failed attempt searched
    again later is left out, :func:`meds3.rollout.store.read_trees`).

    Raises:
        DataError: a path that does not exist, holds no shards, or a malformed tree line.
    """
    from meds3.hub import resolve_hub
    from meds3.rollout.store import SHARD_GLOB, read_trees

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for raw in paths:
        path = resolve_hub(raw, repo_type="dataset")  # a local path, or a Hub dataset's snapshot (meds3.hub)
        if path.is_dir():
            folder = path / "trees" if (path / "trees").is_dir() else path
            if not any(folder.glob(SHARD_GLOB)):
                raise DataError(str(path), None, f"no tree shards ({SHARD_GLOB}) found")
            trees = read_trees(folder)
        elif path.is_file():
            trees = _read_shard(path)
        else:
            raise DataError(str(path), None, "does not exist")
        for tree in trees:
            tree.source = str(raw)
            yield tree


def _read_shard(shard: Path) -> Iterator[Tree]:
    from meds3.rollout.store import read_shard

    for _, tree in read_shard(shard):
        yield tree


def _trajectories(trees: Iterable[Tree], prompt: PromptConfig | None) -> Iterator[dict[str, Any]]:
    """Per question, the trajectories of all its trees, in input order.

    Trees are keyed by (source, question): a question searched in several iterations (several
    rollout folders) contributes the paths of every one of its trees, the earlier sources'
    first, so callers list sources newest first where a cap applies. A second tree of the same
    question in one source (a duplicate) is skipped with a warning; failed trees are never
    used (their search stopped on an error).
    """
    merged: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    failed = 0
    for tree in trees:
        key = (tree.source, tree.question.id)
        if key in seen:
            logger.warning("duplicate tree for question %r in %s skipped", tree.question.id, tree.source or "input")
            continue
        seen.add(key)
        if tree.status == "failed":
            failed += 1
            continue
        item = extract_trajectories(tree, prompt)
        for traj in item["pos"] + item["neg"]:
            traj["source"] = tree.source
        if tree.question.id in merged:
            merged[tree.question.id]["pos"].extend(item["pos"])
            merged[tree.question.id]["neg"].extend(item["neg"])
        else:
            merged[tree.question.id] = item
    if failed:
        logger.info("%d failed tree(s) left out of the training data", failed)
    yield from merged.values()


def _unique(trajs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for t in trajs:
        key = tuple(" ".join(s.split()) for s in t["steps"])  # whitespace-normalized step texts
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def min_step_value(traj: dict[str, Any]) -> float:
    """The smallest value over the steps after the root (the root's when there are none)."""
    values = traj["values"][1:] or traj["values"]
    return float(min(values))


def _record(item: dict[str, Any], traj: dict[str, Any]) -> dict[str, Any]:
    return {"question_id": item["question_id"], "question": item["question"], "steps": list(traj["steps"]),
            "values": [float(v) for v in traj["values"]], "answer": traj["answer"], "verdict": traj["verdict"],
            "source": traj.get("source", "")}


def sft_records(trees: Iterable[Tree], config: SFTDataConfig | None = None,
                prompt: PromptConfig | None = None) -> list[dict[str, Any]]:
    """Policy SFT records: correct (``pos``) trajectories, selected per ``config``.

    ``trees`` may hold several trees of one question (one per iteration that searched it, from
    different sources): all their paths count, deduplicated by step text, the first source's
    first (see :func:`_trajectories`).

    Each record: ``question_id``, ``question`` (dict), ``steps`` (Step 0 first), ``values``,
    ``answer``, ``verdict``, ``source`` (the tree folder or file the path came from).
    """
    config = config or SFTDataConfig()
    out = []
    for item in _trajectories(trees, prompt):
        pos = _unique(item["pos"]) if config.dedupe else list(item["pos"])
        if config.top_k is not None:
            pos = sorted(pos, key=min_step_value, reverse=True)[: config.top_k]  # stable: ties keep node order
        if config.max_per_question is not None:
            pos = pos[: config.max_per_question]
        out.extend(_record(item, t) for t in pos)
    return out


def prm_records(trees: Iterable[Tree], config: PRMDataConfig | None = None,
                prompt: PromptConfig | None = None) -> list[dict[str, Any]]:
    """PRM records: correct and (with ``include_neg``) incorrect trajectories with per-step
    values as soft labels; same fields as :func:`sft_records`. With ``require_pos_and_neg``
    (the default) a question counts only when its trees hold both a correct and an incorrect
    path: one with a single kind carries no contrast for the PRM to learn."""
    config = config or PRMDataConfig()
    out = []
    for item in _trajectories(trees, prompt):
        if config.require_pos_and_neg and not (item["pos"] and item["neg"]):
            continue
        groups = [(item["pos"], config.max_pos_per_question)]
        if config.include_neg:
            groups.append((item["neg"], config.max_neg_per_question))
        for trajs, cap in groups:
            trajs = _unique(trajs) if config.dedupe else list(trajs)
            out.extend(_record(item, t) for t in trajs[:cap])
    return out


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write records as JSON lines atomically (creating the folder; :func:`meds3.io.atomic_open`)."""
    path = Path(path)
    with atomic_open(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records written by :func:`write_jsonl`.

    Raises:
        DataError: unreadable JSON or a record without ``question`` and ``steps``.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), f"line {lineno}", f"invalid JSON: {exc.msg}") from exc
            for key in ("question", "steps"):
                if key not in rec:
                    raise DataError(str(path), f"line {lineno}", "missing", field=key)
            out.append(rec)
    return out


def _tokenized(records, tokenizer, prompt, max_length, label_fn, end_of_turn, what):
    from datasets import Dataset

    rows, dropped = [], 0
    for rec in records:
        q = MedQuestion.from_dict(rec["question"])
        tokens = tokenize_trajectory(tokenizer, q, rec["steps"], prompt, end_of_turn=end_of_turn)
        labels = label_fn(tokens, rec)
        ids = tokens.input_ids[:max_length] if max_length else tokens.input_ids
        labels = labels[: len(ids)]
        if all(v == IGNORE_INDEX for v in labels):
            dropped += 1  # the response starts beyond max_length: nothing to learn from
            continue
        rows.append({"question_id": rec["question_id"], "input_ids": ids,
                     "attention_mask": [1] * len(ids), "labels": labels})
    if dropped:
        logger.warning("%s: %d of %d examples dropped (no labelled token within max_length=%s)",
                       what, dropped, len(records), max_length)
    if not rows:
        raise DataError("<records>", None, f"no {what} examples with a labelled token "
                                           f"(records: {len(records)}, max_length: {max_length})")
    return Dataset.from_list(rows)


def sft_dataset(records: Sequence[dict[str, Any]], tokenizer: Any, prompt: PromptConfig | None = None,
                max_length: Optional[int] = None):
    """Tokenized SFT examples (``input_ids``, ``attention_mask``, ``labels``): the loss covers
    the response (steps, answer, end of turn) only.

    Raises:
        DataError: no example keeps a labelled token within ``max_length``.
    """
    return _tokenized(records, tokenizer, prompt, max_length, lambda t, r: sft_labels(t), True, "SFT")


def prm_dataset(records: Sequence[dict[str, Any]], tokenizer: Any, prompt: PromptConfig | None = None,
                max_length: Optional[int] = None, label_root: bool = False):
    """Tokenized PRM examples: float ``labels`` holding each step's value at its last token
    and :data:`IGNORE_INDEX` elsewhere; steps cut off by ``max_length`` lose their label.

    Raises:
        DataError: no example keeps a labelled step within ``max_length``.
    """
    return _tokenized(records, tokenizer, prompt, max_length,
                      lambda t, r: step_labels(t, r["values"], label_root), False, "PRM")
