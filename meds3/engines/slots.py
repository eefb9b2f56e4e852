"""The running batch's KV cache in fixed row slots, for the transformers backend's decode loop.

``KVBatch`` (``kv.py``) is rebuilt whenever rows join or leave: admitting a prompt concatenated
the whole running cache into new buffers, and dropping finished rows copied every live row
again. Measured on the asynchronous forest (docs/benchmarks.md), those copies and their zeroed
allocations took a fifth of the run, because a stream admits a tree's few requests at a time.

``SlotKV`` keeps one set of buffers ``[slots, kv_heads, capacity, head_dim]`` per layer for the
whole life of the stream. A row owns a slot until it finishes; a new row is written into a free
slot (only its own KV is copied), right-aligned to the shared write column ``length`` like every
other row; the decode step reads the first ``active`` slots in place. The rare whole-cache copies
left are the ones no layout avoids cheaply, each counted in :attr:`SlotKV.copies`:

- ``shift``: a new row's KV is longer than the running length, so every row moves right;
- ``trim``: the leading columns no row uses have grown to a quarter of the length (they cost
  attention work every step), so every row moves left;
- ``grow``: more slots or columns than allocated (the buffers double);
- ``move``: after rows finish, live rows in the top slots move down into free ones so the
  decode step runs over fewer slots (only the moved rows are copied).

Invariants (tests/test_engine_slots.py checks them after every operation):

1. slots ``>= active`` hold nothing: their mask rows are zero;
2. every slot's real tokens lie in columns ``[0, length)``; column ``length`` is the next write;
3. rows placed without holes (every prompt when the prefix store is off, as in batch-invariant
   mode) stay one contiguous span ending at ``length``: shifts, trims and moves keep spans whole,
   which :mod:`meds3.engines.invariant`'s attention requires.
"""

from __future__ import annotations

from typing import Sequence

import torch

from meds3.engines.kv import KV, KVBatch, slot_cache

HEADROOM = 64  # free columns allocated beyond the need, so a column growth is rare
TRIM_SHARE = 4  # trim when unused leading columns reach 1/TRIM_SHARE of the length


class SlotKV:
    """KV buffers whose rows are slots that decoding rows occupy until they finish.

    Attributes:
        keys, values: per layer ``[slots, kv_heads, capacity, head_dim]``.
        mask: ``[slots, capacity]`` long, 1 at real token positions.
        next_pos: ``[slots]`` position id of each slot's next token.
        length: filled columns, shared by every slot (the next token goes to this column).
        active: slots ``[0, active)`` take part in a decode step.
        copies: whole-cache copies made, by kind (``shift``, ``trim``, ``grow``, ``move``).
    """

    def __init__(self, like: dict, headroom: int = HEADROOM):
        self.like, self.headroom = like, headroom
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=like["device"])
        self.next_pos = torch.zeros(0, dtype=torch.long, device=like["device"])
        self.length = 0
        self.active = 0
        self.copies = {"shift": 0, "trim": 0, "grow": 0, "move": 0}

    @property
    def slots(self) -> int:
        """Allocated slots."""
        return self.mask.shape[0]

    @property
    def capacity(self) -> int:
        """Allocated columns."""
        return self.mask.shape[1]

    @property
    def rows(self) -> int:
        """Rows a decode step computes (the active slots)."""
        return self.active

    # -------------------------------------------------------------- writing
    def place(self, slots: Sequence[int], src: KVBatch, index: torch.Tensor) -> None:
        """Write row ``index[i]`` of a prefilled ``src`` into slot ``slots[i]``.

        Only the columns some placed row uses are copied, right-aligned to :attr:`length`
        (every row's next token goes to the same column). A span longer than :attr:`length`
        first shifts the running rows right.
        """
        used = torch.nonzero(src.mask[index, : src.length].any(0)).flatten()
        width = src.length - int(used[0]) if len(used) else 0
        if width > self.length:
            self._shift_right(width - self.length)
        self.reserve(0, rows=max(slots) + 1)
        dst = torch.tensor(list(slots), dtype=torch.long, device=self.mask.device)
        index = index.to(self.mask.device)
        lo, hi = self.length - width, self.length
        for layer in range(len(self.keys)):
            self.keys[layer][dst, :, lo:hi] = src.keys[layer][index, :, src.length - width : src.length]
            self.values[layer][dst, :, lo:hi] = src.values[layer][index, :, src.length - width : src.length]
        self.mask[dst] = 0
        self.mask[dst, lo:hi] = src.mask[index, src.length - width : src.length]
        self.next_pos[dst] = src.next_pos[index]
        self.active = max(self.active, max(slots) + 1)

    def free(self, slot: int) -> None:
        """Forget the row in ``slot`` (its KV stays until overwritten; the mask hides it)."""
        self.mask[slot] = 0

    def open_column(self) -> None:
        """Make room for one more column and mark it attended for every active slot."""
        self.reserve(1)
        self.mask[: self.active, self.length] = 1

    def advance(self, q: int) -> None:
        """Count ``q`` columns just written by a forward pass."""
        self.length += q
        self.next_pos[: self.active] += q

    def reset(self) -> None:
        """Nothing decodes: every slot free, length 0 (buffers are kept for the next rows)."""
        self.mask.zero_()
        self.length = self.active = 0

    # --------------------------------------------------------------- layout
    def reserve(self, extra: int, rows: int = 0) -> None:
        """Room for ``extra`` more columns and ``rows`` slots: trims unused leading columns
        first when the columns run out, then doubles what is still short."""
        if self.length + extra > self.capacity and self.unused_lead() > 0:
            self.trim()
        cols = self.length + extra
        if cols <= self.capacity and rows <= self.slots:
            return
        slots = self.slots if rows <= self.slots else max(rows, 2 * self.slots)
        capacity = self.capacity if cols <= self.capacity else max(cols + self.headroom, 2 * self.capacity)
        self._reallocate(slots, capacity)

    def unused_lead(self) -> int:
        """Leading columns that no active slot attends (all padding)."""
        if self.active == 0 or self.length == 0:
            return self.length
        used = torch.nonzero(self.mask[: self.active, : self.length].any(0)).flatten()
        return int(used[0]) if len(used) else self.length

    def trim_if_wasteful(self) -> None:
        """Trim when the unused leading columns reach 1/:data:`TRIM_SHARE` of the length (and
        at least the headroom): the decode step's attention reads every column."""
        lead = self.unused_lead()
        if lead >= max(self.headroom, self.length // TRIM_SHARE):
            self.trim()

    def trim(self) -> None:
        """Move every active slot left over the unused leading columns."""
        lead = self.unused_lead()
        if lead == 0:
            return
        a, n = self.active, self.length - lead
        for t in self.keys + self.values:
            t[:a, :, :n] = t[:a, :, lead : self.length].clone()
        self.mask[:a, :n] = self.mask[:a, lead : self.length].clone()
        self.mask[:a, n:] = 0
        self.length = n
        self.copies["trim"] += 1

    def _shift_right(self, d: int) -> None:
        """Move every active slot right by ``d`` columns (a longer row is about to join).

        Grows the columns without trimming first: a trim would shorten :attr:`length` under the
        caller, which needs it to reach ``length + d``, and could not lower that need anyway."""
        if self.length + d > self.capacity:
            self._reallocate(self.slots, max(self.length + d + self.headroom, 2 * self.capacity))
        a, n = self.active, self.length
        if a and n:
            for t in self.keys + self.values:
                t[:a, :, d : d + n] = t[:a, :, :n].clone()
            self.mask[:a, d : d + n] = self.mask[:a, :n].clone()
            self.mask[:a, :d] = 0
            self.copies["shift"] += 1
        self.length = n + d

    def _reallocate(self, slots: int, capacity: int) -> None:
        like = self.like
        shape = (slots, like["heads"], capacity, like["head_dim"])
        new = lambda: torch.zeros(shape, dtype=like["dtype"], device=like["device"])  # noqa: E731
        keys = [new() for _ in range(like["n_layers"])]
        values = [new() for _ in range(like["n_layers"])]
        mask = torch.zeros(slots, capacity, dtype=torch.long, device=like["device"])
        next_pos = torch.zeros(slots, dtype=torch.long, device=like["device"])
        a, n = self.active, self.length
        if self.keys and a:
            for old, fresh in zip(self.keys + self.values, keys + values):
                fresh[:a, :, :n] = old[:a, :, :n]
            mask[:a, :n] = self.mask[:a, :n]
            next_pos[:a] = self.next_pos[:a]
            self.copies["grow"] += 1
        self.keys, self.values, self.mask, self.next_pos = keys, values, mask, next_pos

    def move(self, src: Sequence[int], dst: Sequence[int]) -> None:
        """Copy the rows of slots ``src`` into slots ``dst`` (free ones) and free ``src``."""
        if not src:
            return
        s = torch.tensor(list(src), dtype=torch.long, device=self.mask.device)
        d = torch.tensor(list(dst), dtype=torch.long, device=self.mask.device)
        n = self.length
        for t in self.keys + self.values:
            t[d, :, :n] = t[s, :, :n]
        self.mask[d] = self.mask[s]
        self.next_pos[d] = self.next_pos[s]
        self.mask[s] = 0
        self.copies["move"] += 1

    # -------------------------------------------------------------- reading
    def attention_mask(self, q: int) -> torch.Tensor:
        """The mask of the active slots over the cached columns and ``q`` new ones."""
        return self.mask[: self.active, : self.length + q]

    def layer_views(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the active slots (views, no copy)."""
        return self.keys[layer][: self.active], self.values[layer][: self.active]

    def as_cache(self):
        """A transformers cache object that reads and writes these buffers in place."""
        return slot_cache(self)

    def row_kv(self, slot: int) -> KV:
        """Contiguous KV of the real tokens of ``slot``."""
        where = torch.nonzero(self.mask[slot, : self.length]).flatten()
        return [(k[slot].index_select(1, where), v[slot].index_select(1, where))
                for k, v in zip(self.keys, self.values)]
