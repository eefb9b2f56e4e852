"""The transformers engine's slot KV (``meds3/engines/slots.py``) and decode scheduler
(``meds3/engines/scheduler.py``), without a model: exact columns, masks, copies and admissions.

KV values here are the token's position tag, so where a row's keys land can be read back exactly.
"""

from __future__ import annotations

import torch

from meds3.engines.kv import KVBatch
from meds3.engines.scheduler import DecodeScheduler, Row, Unit
from meds3.engines.slots import SlotKV
from meds3.engines.types import SamplingParams

LIKE = dict(n_layers=2, heads=1, head_dim=1, dtype=torch.float32, device=torch.device("cpu"))


def prefilled(spans: list[list[float]]) -> KVBatch:
    """A prefilled batch: row i holds the values ``spans[i]``, right-aligned (left padding)."""
    top = max(len(s) for s in spans)
    batch = KVBatch.empty(rows=len(spans), capacity=top, **LIKE)
    for i, span in enumerate(spans):
        for layer in range(2):
            batch.keys[layer][i, 0, top - len(span) : top, 0] = torch.tensor(span) + 100 * layer
            batch.values[layer][i, 0, top - len(span) : top, 0] = -torch.tensor(span)
        batch.mask[i, top - len(span) : top] = 1
        batch.next_pos[i] = len(span)
    batch.length = top
    return batch


def row(kv: SlotKV, slot: int, layer: int = 0) -> list[float]:
    """The real (masked-in) key values of a slot, in column order."""
    return [float(x) for x in kv.row_kv(slot)[layer][0][0, :, 0]]


def columns(kv: SlotKV, slot: int) -> list[int]:
    return torch.nonzero(kv.mask[slot, : kv.length]).flatten().tolist()


def test_place_right_aligns_to_the_running_length_and_copies_only_new_rows():
    kv = SlotKV(LIKE, headroom=4)
    kv.place([0, 1], prefilled([[1, 2, 3], [7, 8]]), torch.tensor([0, 1]))
    assert (kv.length, kv.active) == (3, 2)
    assert columns(kv, 0) == [0, 1, 2] and columns(kv, 1) == [1, 2]
    assert row(kv, 0) == [1, 2, 3] and row(kv, 1, layer=1) == [107, 108]
    assert kv.next_pos[:2].tolist() == [3, 2]
    kv.place([2], prefilled([[5, 6]]), torch.tensor([0]))  # shorter: no shift
    assert columns(kv, 2) == [1, 2] and row(kv, 2) == [5, 6]
    assert kv.copies == {"shift": 0, "trim": 0, "grow": 1, "move": 0}  # one growth: a third slot


def test_a_longer_row_shifts_the_running_rows_right():
    kv = SlotKV(LIKE, headroom=4)
    kv.place([0], prefilled([[1, 2]]), torch.tensor([0]))
    kv.place([1], prefilled([[4, 5, 6, 7]]), torch.tensor([0]))
    assert kv.length == 4 and kv.copies["shift"] == 1
    assert columns(kv, 0) == [2, 3] and row(kv, 0) == [1, 2]
    assert columns(kv, 1) == [0, 1, 2, 3] and row(kv, 1) == [4, 5, 6, 7]


def test_a_longer_row_joining_when_columns_run_out_and_leading_ones_are_unused():
    # The shift needs more columns than allocated while the running rows leave leading columns
    # unused: growing must not trim first (a trim shortened the length under the shift, and the
    # placed span landed at a negative column: a shape mismatch seen on the embedded model).
    kv = SlotKV(LIKE, headroom=2)
    kv.place([0, 1], prefilled([[1, 2, 3, 4, 5, 6], [8]]), torch.tensor([0, 1]))
    assert (kv.length, kv.capacity) == (6, 8)
    kv.free(0)  # only column 5 is used now: 5 unused leading columns
    assert kv.unused_lead() == 5
    wide = list(range(20, 30))
    kv.place([0], prefilled([wide]), torch.tensor([0]))
    assert kv.length == 10 and kv.capacity >= 10
    assert columns(kv, 0) == list(range(10)) and row(kv, 0) == wide
    assert columns(kv, 1) == [9] and row(kv, 1) == [8] and row(kv, 1, layer=1) == [108]
    assert kv.next_pos[:2].tolist() == [10, 1]


def test_repeated_index_places_n_samples_of_one_prefill():
    kv = SlotKV(LIKE)
    kv.place([3, 0, 1], prefilled([[1, 2], [9]]), torch.tensor([0, 0, 1]))
    assert kv.active == 4
    assert row(kv, 3) == row(kv, 0) == [1, 2] and row(kv, 1) == [9]
    assert columns(kv, 2) == []  # never placed: nothing attended


def test_decode_columns_trim_and_free_slots():
    kv = SlotKV(LIKE, headroom=2)
    kv.place([0, 1], prefilled([[1, 2, 3, 4, 5, 6], [8]]), torch.tensor([0, 1]))
    for step in range(3):  # three decode steps writing tag 50+step in place
        kv.open_column()
        for layer in range(2):
            kv.keys[layer][:2, 0, kv.length, 0] = 50 + step
        kv.advance(1)
    assert kv.length == 9 and row(kv, 1) == [8, 50, 51, 52]
    assert kv.next_pos[:2].tolist() == [9, 4]
    kv.free(0)
    assert kv.unused_lead() == 5  # slot 1's span starts at column 5
    kv.trim()
    assert kv.length == 4 and columns(kv, 1) == [0, 1, 2, 3] and row(kv, 1) == [8, 50, 51, 52]
    assert kv.copies["trim"] == 1


def test_trim_if_wasteful_waits_for_a_quarter_of_the_length():
    kv = SlotKV(LIKE, headroom=1)
    kv.place([0, 1], prefilled([[1] * 8, [2, 2, 2, 2, 2, 2, 2]]), torch.tensor([0, 1]))
    kv.free(0)
    kv.trim_if_wasteful()  # lead 1 < 8 // 4
    assert kv.length == 8
    kv.place([0], prefilled([[3] * 5]), torch.tensor([0]))
    kv.free(1)
    kv.trim_if_wasteful()  # lead 3 >= 8 // 4
    assert kv.length == 5 and row(kv, 0) == [3] * 5


def test_move_copies_rows_down_and_frees_the_sources():
    kv = SlotKV(LIKE)
    kv.place([0, 1, 2], prefilled([[1], [2, 2], [3, 3, 3]]), torch.tensor([0, 1, 2]))
    kv.free(0)
    kv.move([2], [0])
    assert row(kv, 0) == [3, 3, 3] and columns(kv, 2) == [] and kv.next_pos[0] == 3


def test_columns_and_slots_grow_keeping_rows():
    kv = SlotKV(LIKE, headroom=0)
    kv.place([0], prefilled([[1, 2]]), torch.tensor([0]))
    cap = kv.capacity
    for _ in range(cap):
        kv.open_column()
        kv.advance(1)
    assert kv.capacity >= 2 * cap and row(kv, 0)[:2] == [1, 2]
    kv.place([5], prefilled([[4]]), torch.tensor([0]))
    assert kv.slots >= 6 and row(kv, 0)[:2] == [1, 2] and row(kv, 5) == [4]


def params(max_new: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=max_new)


def unit(prompt_len: int, n: int = 1, max_new: int = 4, adapter=None, ticket: int = 0) -> Unit:
    rows = [Row(ticket, j, params(max_new), torch.Generator(), None, [1] * prompt_len) for j in range(n)]
    return Unit(adapter, [1] * prompt_len, ticket, rows)


def scheduler(max_rows=8, max_tokens=1000, admit_wait=0) -> DecodeScheduler:
    return DecodeScheduler(SlotKV(LIKE), max_rows, max_tokens, admit_wait)


def seat(s: DecodeScheduler, units: list[Unit]) -> list[int]:
    """Place the units' rows as the engine does (one prefilled row per unit, n samples each)."""
    rows = [r for u in units for r in u.rows]
    index = torch.repeat_interleave(torch.arange(len(units)), torch.tensor([len(u.rows) for u in units]))
    slots = s.free_slots(len(rows))
    s.kv.place(slots, prefilled([[1.0] * len(u.ids) for u in units]), index)
    s.seat(rows, slots)
    s.check()
    return slots


def test_queue_is_ordered_by_adapter_then_longest_prompt():
    s = scheduler()
    s.enqueue([unit(3, ticket=0), unit(9, adapter="b", ticket=1), unit(7, ticket=2)])
    s.enqueue([unit(5, adapter="a", ticket=3)])
    assert [(u.adapter, len(u.ids)) for u in s.queue] == [(None, 7), (None, 3), ("a", 5), ("b", 9)]


def test_admission_stops_at_the_row_cap_and_the_kv_budget():
    s = scheduler(max_rows=4, max_tokens=10 * (8 + 4))
    s.enqueue([unit(8, n=3, ticket=0), unit(6, n=2, ticket=1), unit(2, ticket=2)])
    first = s.admissible()
    assert [len(u.rows) for u in first] == [3]  # 3 + 2 rows > 4
    seat(s, first)
    assert s.admissible() == []  # 3 live + 2 still > 4
    s.release(0)
    s.release(1)
    s.check()
    nxt = s.admissible()
    assert [len(u.ids) for u in nxt] == [6, 2]
    budget = scheduler(max_rows=16, max_tokens=2 * (8 + 4))
    budget.enqueue([unit(8, n=2), unit(8)])
    assert [len(u.rows) for u in budget.admissible()] == [2]  # a third row would pass 24 KV tokens


def test_an_oversized_unit_runs_alone_rather_than_never():
    s = scheduler(max_rows=2, max_tokens=10)
    s.enqueue([unit(50, n=1), unit(3)])
    assert [len(u.ids) for u in s.admissible()] == [50]


def test_an_adapter_switch_waits_for_the_batch_to_drain():
    s = scheduler()
    s.enqueue([unit(4, adapter="a")])
    slots = seat(s, s.admissible())
    s.enqueue([unit(4, adapter="b")])
    assert s.admissible() == []
    for slot in slots:
        s.release(slot)
    assert [u.adapter for u in s.admissible()] == ["b"] and s.adapter == "b"


def test_admit_wait_gathers_prompts_until_half_the_live_rows():
    s = scheduler(admit_wait=3)
    s.enqueue([unit(4, n=4)])
    seat(s, s.admissible())  # nothing decodes: admitted at once
    s.enqueue([unit(4)])
    assert [s.admissible() for _ in range(3)] == [[], [], []]
    assert len(s.admissible()) == 1  # waited admit_wait steps
    s.enqueue([unit(4), unit(3)])  # 2 queued rows >= 5 live // 2
    assert len(s.admissible()) == 2


def test_free_slots_are_reused_lowest_first_and_compaction_moves_top_rows_down():
    s = scheduler()
    s.enqueue([unit(4, n=6)])
    assert seat(s, s.admissible()) == [0, 1, 2, 3, 4, 5]
    for slot in (1, 2):
        s.release(slot)
    s.enqueue([unit(3)])
    assert seat(s, s.admissible()) == [1]
    s.release(3)
    s.release(4)
    moved = s.rows[5]
    s.compact()  # 2 of 6 free >= 6 // 4: slot 5 moves into slot 2
    s.check()
    assert s.kv.active == 3 and s.rows[2] is moved and s.live() == [0, 1, 2]
    assert s.kv.copies["move"] == 1
