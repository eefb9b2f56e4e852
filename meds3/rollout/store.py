"""The tree store: JSONL shards written whole or not at all, readable while a job runs.

Completed trees are buffered and written as a new shard file through a temporary file,
flush, fsync and rename, so a job killed at any moment leaves only complete shards. On a
rerun, :meth:`TreeStore.done_ids` tells which questions to skip: none is lost (unwritten
trees are searched again) and none is written twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from meds3.mcts.node import Tree

logger = logging.getLogger(__name__)

SHARD_GLOB = "trees-*.jsonl"


class TreeStore:
    """A folder of tree shards.

    Args:
        root: the folder (created if needed).
        flush_every: trees buffered before a shard is written (1 writes each tree at once).
        writer: a tag in shard names so several writers never collide (e.g. a worker id).
    """

    def __init__(self, root: str | os.PathLike, flush_every: int = 8, writer: str = "local"):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.writer = writer
        self._buffer: list[Tree] = []
        self._written: set[str] = set()
        self._counter = itertools.count()
        for stale in self.root.glob(f".tmp-{writer}-*"):
            stale.unlink()  # a shard whose writer was killed before its rename: never complete

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(SHARD_GLOB))

    def iter_trees(self) -> Iterator[Tree]:
        """Every stored tree, once per question id (a duplicate, which only a crashed
        external writer could leave, is skipped with a warning)."""
        seen: set[str] = set()
        for shard in self.shards():
            with open(shard, encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    tree = Tree.from_dict(json.loads(line))
                    if tree.question.id in seen:
                        logger.warning("%s:%d: duplicate tree for %r skipped", shard, lineno, tree.question.id)
                        continue
                    seen.add(tree.question.id)
                    yield tree

    def done_ids(self) -> set[str]:
        """Question ids with a stored tree (complete or failed), plus those buffered."""
        ids: set[str] = set()
        for shard in self.shards():
            with open(shard, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        ids.add(json.loads(line)["question"]["id"])
        return ids | {t.question.id for t in self._buffer}

    def add(self, tree: Tree) -> None:
        """Buffer a finished tree; write a shard once ``flush_every`` are buffered."""
        if tree.question.id in self._written or any(t.question.id == tree.question.id for t in self._buffer):
            raise ValueError(f"tree for question {tree.question.id!r} was already added")
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
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{self.writer}-", suffix=".jsonl", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for tree in self._buffer:
                    f.write(json.dumps(tree.to_dict(), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.root)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._written.update(t.question.id for t in self._buffer)
        self._buffer = []
        return final

    def close(self) -> None:
        self.flush()


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
