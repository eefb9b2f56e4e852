"""Continuous batching for the transformers backend: which rows decode together, and when
queued prompts join them.

The engine (``hf_backend.py``) owns the model: prefill, decode step, sampling. This module owns
the bookkeeping, so the rules live in one place and are tested without a model
(tests/test_engine_slots.py):

- **Queue.** Prefill units (one prompt and the samples drawn from it) wait in order of adapter,
  then longest prompt first, so later and shorter prompts fit under the running length.
- **Admission (one test).** The head of the queue joins when it uses the running batch's LoRA
  adapter (a switch waits until the batch drains), the live rows plus the new ones stay within
  ``max_rows``, and the KV they may reach, rows x (length + longest ``max_new_tokens``), stays
  within ``max_tokens``. Units keep joining while the next one fits. A unit too big to ever fit
  runs alone (with a warning) rather than never. ``admit_wait`` lets the queue wait a few decode
  steps to gather prompts into one prefill; 0 (the default) admits at once, which the slot
  layout makes cheap: only the new rows' KV is written.
- **Slots.** Each admitted row takes the lowest free slot of the ``SlotKV`` and keeps it until it
  finishes. When a quarter of the active slots are free, live rows from the top slots move down
  (:data:`COMPACT_SHARE`), so the decode step computes fewer dead rows.

Invariants (:meth:`DecodeScheduler.check`): ``rows`` has one entry per active slot, ``None``
exactly for free slots; live rows never exceed ``max_rows`` (but for one oversized unit run
alone); every live slot holds KV; no slot beyond the active ones does. Every live row runs on
``adapter``: :meth:`DecodeScheduler.admissible` admits only units of the running adapter.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from meds3.engines.sampling import StopChecker
from meds3.engines.slots import SlotKV
from meds3.engines.types import SamplingParams

logger = logging.getLogger(__name__)
COMPACT_SHARE = 4  # move rows down when 1/COMPACT_SHARE of the active slots are free


@dataclass
class Row:
    """One sample being decoded."""

    req: int  # ticket of its request
    index: int  # sample index within the request
    params: SamplingParams
    generator: torch.Generator
    stop: StopChecker | None
    prompt: list[int]
    ids: list[int] = field(default_factory=list)
    done: bool = False


@dataclass
class Unit:
    """One prefill: a prompt and the rows that sample from it."""

    adapter: str | None
    ids: list[int]
    owner: int  # ticket charged with the computed prompt tokens
    rows: list[Row]


class DecodeScheduler:
    """The queue of prefill units and the rows decoding in KV slots.

    Args:
        kv: the slot store the rows' KV lives in.
        max_rows: most rows decoded together.
        max_tokens: KV tokens the running rows may reach.
        admit_wait: decode steps queued prompts may wait to be admitted together.
    """

    def __init__(self, kv: SlotKV, max_rows: int, max_tokens: int, admit_wait: int = 0):
        self.kv, self.max_rows, self.max_tokens, self.admit_wait = kv, max_rows, max_tokens, admit_wait
        self.queue: deque[Unit] = deque()
        self.rows: list[Row | None] = []
        self.adapter: str | None = None
        self._waited = 0

    # ---------------------------------------------------------------- queue
    def enqueue(self, units: Iterable[Unit]) -> None:
        """Add prefill units; the queue stays in admission order (adapter, longest first)."""
        queue = list(self.queue) + list(units)
        queue.sort(key=lambda u: (u.adapter or "", -len(u.ids)))
        self.queue = deque(queue)

    def live(self) -> list[int]:
        """Slots whose rows are still decoding, in slot order."""
        return [i for i, r in enumerate(self.rows) if r is not None and not r.done]

    def busy(self) -> bool:
        """Whether anything is queued or decoding."""
        return bool(self.queue) or any(r is not None and not r.done for r in self.rows)

    def admissible(self) -> list[Unit]:
        """Pop the queued units that join the batch now (see the module docstring)."""
        queue = self.queue
        if not queue:
            return []
        live = [self.rows[i] for i in self.live()]
        if live and queue[0].adapter != self.adapter:
            return []
        if not self._admit_now(len(live)):
            return []
        n_rows = len(live)
        length = self.kv.length if live else 0
        max_new = max((r.params.max_new_tokens for r in live), default=0)
        units: list[Unit] = []
        while queue and (not units or queue[0].adapter == units[0].adapter):
            unit = queue[0]
            rows = n_rows + len(unit.rows)
            new_len = max(length, len(unit.ids))
            new_max = max([max_new] + [r.params.max_new_tokens for r in unit.rows])
            fits = rows <= self.max_rows and rows * (new_len + new_max) <= self.max_tokens
            if not fits:
                if units or live:
                    break
                logger.warning("one prompt group exceeds the KV budget; running it alone")
                units.append(queue.popleft())
                break
            units.append(queue.popleft())
            n_rows, length, max_new = rows, new_len, new_max
        if units:
            self.adapter = units[0].adapter
        return units

    def _admit_now(self, live: int) -> bool:
        """Admit at once, or wait up to ``admit_wait`` decode steps until the queue holds rows
        for half the live ones (one prefill for several prompts), unless nothing decodes."""
        queued = sum(len(u.rows) for u in self.queue)
        if live == 0 or queued >= max(1, live // 2) or self._waited >= self.admit_wait:
            self._waited = 0
            return True
        self._waited += 1
        return False

    # ---------------------------------------------------------------- slots
    def free_slots(self, n: int) -> list[int]:
        """The ``n`` lowest free slots (free active slots first, then new ones)."""
        free = [i for i, r in enumerate(self.rows) if r is None][:n]
        return free + list(range(len(self.rows), len(self.rows) + n - len(free)))

    def seat(self, rows: list[Row], slots: list[int]) -> None:
        """Record ``rows`` as decoding in ``slots`` (their KV was just placed there)."""
        top = max(slots) + 1
        if top > len(self.rows):
            self.rows.extend([None] * (top - len(self.rows)))
        for row, slot in zip(rows, slots):
            assert self.rows[slot] is None, f"slot {slot} is taken"
            self.rows[slot] = row

    def release(self, slot: int) -> None:
        """Free the slot of a finished row."""
        self.rows[slot] = None
        self.kv.free(slot)

    def compact(self) -> None:
        """Move live rows from the top slots into free lower ones when enough slots are free,
        then shrink the active slots to the highest live one."""
        live = self.live()
        active = len(self.rows)
        if active - len(live) >= max(1, active // COMPACT_SHARE):
            keep = len(live)
            src = [i for i in live if i >= keep]
            dst = [i for i in range(keep) if self.rows[i] is None][: len(src)]
            self.kv.move(src, dst)
            for s, d in zip(src, dst):
                self.rows[d], self.rows[s] = self.rows[s], None
        while self.rows and self.rows[-1] is None:
            self.rows.pop()
        self.kv.active = len(self.rows)

    def reset(self, queue: bool = False) -> None:
        """Nothing decodes any more (and, with ``queue``, nothing waits either)."""
        self.rows = []
        self.kv.reset()
        if queue:
            self.queue = deque()
            self._waited = 0

    # --------------------------------------------------------------- checks
    def check(self) -> None:
        """Assert the invariants of the module docstring (for tests)."""
        assert len(self.rows) == self.kv.active, (len(self.rows), self.kv.active)
        live = self.live()
        assert len(live) <= self.max_rows or len(self.rows) == len(live), "more live rows than max_rows"
        for i in live:
            assert bool(self.kv.mask[i, : self.kv.length].any()), f"live slot {i} has no KV"
        assert not bool(self.kv.mask[self.kv.active:].any()), "a slot beyond the active ones holds KV"

    def describe(self) -> dict[str, Any]:
        """Counters for logs and benchmarks."""
        return {"active": self.kv.active, "live": len(self.live()), "queued": len(self.queue),
                "length": self.kv.length, "copies": dict(self.kv.copies)}
