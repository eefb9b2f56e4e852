"""The tree store: JSONL shards written whole or not at all, readable while a job runs.

Completed trees are buffered and written as a new shard file through a temporary file,
flush, fsync and rename (:func:`meds3.io.atomic_open`), so a job killed at any moment leaves
only complete shards. A temporary file names its writer's pid and host; opening a store removes
those of dead processes only, so a reader never deletes a running job's shard in progress. On a
rerun, :meth:`TreeStore.done_ids` tells which questions to skip: none is lost (unwritten
trees are searched again) and none is written twice.

Failed trees (an engine error that outlived its retry) are searched again on a rerun, up to
``max_attempts`` stored trees per question: each attempt is a new line in a newer shard, so the
number of lines of a question is its attempt count, and readers (:func:`read_trees`,
:meth:`TreeStore.iter_trees`, the training data) see only its newest tree.

Every shard is read and checked when a store is opened (:func:`scan_store`): a damaged shard
(binary, truncated, a line that is not a tree, a node that is its own parent) is a
:class:`~meds3.data.errors.DataError` naming the file and line before any work starts.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from meds3.data.errors import DataError
from meds3.io import atomic_open, remove_stale_temps
from meds3.mcts.node import Tree

logger = logging.getLogger(__name__)

SHARD_GLOB = "trees-*.jsonl"


class TreeStore:
    """A folder of tree shards.

    Args:
        root: the folder (created if needed).
        flush_every: trees buffered before a shard is written (1 writes each tree at once).
        writer: a tag in shard names so several writers never collide (e.g. a worker id).
        max_attempts: stored trees per question before a failed one counts as done (a failed
            tree with fewer attempts is searched again by a rerun).

    Raises:
        DataError: a damaged shard (file and line named).
    """

    def __init__(self, root: str | os.PathLike, flush_every: int = 8, writer: str = "local", max_attempts: int = 3):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.writer = writer
        self._buffer: list[Tree] = []
        self._written: set[str] = set()
        self._counter = itertools.count()
        remove_stale_temps(self.root)  # shards whose writer was killed before the rename: never complete
        self._index = scan_store(self.root)  # why: a damaged shard fails here, before any search

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(SHARD_GLOB))

    def iter_trees(self) -> Iterator[Tree]:
        """Every stored tree, once per question id: its newest (see :func:`read_trees`)."""
        return read_trees(self.root)

    def attempts(self) -> dict[str, int]:
        """Question id -> trees stored for it (failed attempts and the last one)."""
        return {qid: e.attempts for qid, e in self._index.items()}

    def _settled(self, entry) -> bool:
        """Whether a stored question is not searched again: its newest tree is complete, or
        failed ``max_attempts`` times."""
        return entry.status != "failed" or entry.attempts >= self.max_attempts

    def given_up(self) -> list[str]:
        """Questions whose newest tree failed and that used up ``max_attempts``."""
        return sorted(qid for qid, e in self._index.items() if e.status == "failed" and self._settled(e))

    def done_ids(self) -> set[str]:
        """Question ids not to search again (:meth:`_settled`), plus those buffered."""
        return {qid for qid, e in self._index.items() if self._settled(e)} | {t.question.id for t in self._buffer}

    def add(self, tree: Tree) -> None:
        """Buffer a finished tree; write a shard once ``flush_every`` are buffered."""
        qid = tree.question.id
        if qid in self._written or any(t.question.id == qid for t in self._buffer):
            raise ValueError(f"tree for question {qid!r} was already added")
        entry = self._index.get(qid)  # one entry, not the whole done set: retries stay O(1) per tree
        if entry is not None and self._settled(entry):
            raise ValueError(f"question {qid!r} already has a stored tree ({entry.status})")
        self._buffer.append(tree)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def add_many(self, trees: Iterable[Tree]) -> None:
        for tree in trees:
            self.add(tree)

    def flush(self) -> Path | None:
        """Write the buffered trees as one new shard (atomic); returns its path."""
        if not self._buffer:
            return None
        name = f"trees-{time.time_ns():020d}-{self.writer}-{os.getpid()}-{next(self._counter):05d}.jsonl"
        final = self.root / name
        with atomic_open(final) as f:  # temp named with pid and host, fsync, rename, folder fsync
            for tree in self._buffer:
                f.write(json.dumps(tree.to_dict(), ensure_ascii=False) + "\n")
        for lineno, tree in enumerate(self._buffer, start=1):
            before = self._index.get(tree.question.id)
            attempts = (before.attempts if before else 0) + 1
            self._index[tree.question.id] = StoredTree(final, lineno, tree.status, attempts)
        self._written.update(t.question.id for t in self._buffer)
        self._buffer = []
        return final

    def close(self) -> None:
        self.flush()


@dataclass
class StoredTree:
    """Where a question's newest stored tree is, its status, and how many trees it has."""

    shard: Path
    line: int
    status: str
    attempts: int


def _shard_lines(shard: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` of every non-blank line, parsed and checked as a tree.

    Raises:
        DataError: a line that is not UTF-8, not JSON or not a tree (file and line named).
    """
    try:
        f = open(shard, "rb")
    except OSError as exc:
        raise DataError(str(shard), None, f"cannot read the shard: {exc.strerror}") from exc
    with f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"line {lineno}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataError(str(shard), where, f"not UTF-8 text (a binary or damaged shard): {exc.reason}") from exc
            except ValueError as exc:
                raise DataError(str(shard), where, f"not a JSON tree (a truncated or damaged shard): {exc}") from exc
            yield lineno, record


def read_shard(shard: str | os.PathLike) -> Iterator[tuple[int, Tree]]:
    """``(line number, tree)`` for every tree of one shard file, each checked.

    Raises:
        DataError: a line that is not a readable tree, e.g. binary, truncated, without nodes or
            with a node that is its own parent (file and line named).
    """
    shard = Path(shard)
    for lineno, record in _shard_lines(shard):
        try:
            tree = Tree.from_dict(record)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(str(shard), f"line {lineno}", f"not a tree: {exc}") from exc
        yield lineno, tree


def scan_store(root: str | os.PathLike) -> dict[str, StoredTree]:
    """Check every shard of a tree folder; question id -> its newest tree's place and attempts.

    Shards are read in name order (their names start with the write time), so a later line
    of a question is a later attempt.

    Raises:
        DataError: a damaged shard (see :func:`read_shard`).
    """
    index: dict[str, StoredTree] = {}
    for shard in sorted(Path(root).glob(SHARD_GLOB)):
        for lineno, tree in read_shard(shard):
            before = index.get(tree.question.id)
            index[tree.question.id] = StoredTree(shard, lineno, tree.status, (before.attempts if before else 0) + 1)
    return index


def read_trees(root: str | os.PathLike) -> Iterator[Tree]:
    """Every tree of a tree folder, once per question: the newest stored one (an earlier
    failed attempt is left out), in the order of those newest trees. ``root`` may also be a
    folder holding ``trees/``, or a Hub dataset (``hf://datasets/owner/name``, :mod:`meds3.hub`).

    Raises:
        DataError: a damaged shard (see :func:`read_shard`); the whole folder is checked
            before the first tree is yielded.
    """
    from meds3.hub import resolve_hub

    root = resolve_hub(root, repo_type="dataset")  # a local folder, or a Hub dataset's snapshot (meds3.hub)
    if not any(root.glob(SHARD_GLOB)) and (root / "trees").is_dir():
        root = root / "trees"  # a rollout output folder, or a pushed trees dataset (meds3.hub.push_dataset)
    index = scan_store(root)
    wanted: dict[Path, set[int]] = {}
    for entry in index.values():
        wanted.setdefault(entry.shard, set()).add(entry.line)
    for shard in sorted(wanted):
        for lineno, tree in read_shard(shard):
            if lineno in wanted[shard]:
                yield tree
