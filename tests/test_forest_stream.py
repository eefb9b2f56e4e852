"""A forest fed while it runs (``Feed``) and the rollout actor that streams its units through one
forest (meds3/rollout/ray_worker.py), tested in this process: the actor body is a plain class.
The same actor runs under Ray in tests/test_rollout_ray.py and tests/faults/test_fault_ray.py."""

from __future__ import annotations

import threading
import time

import pytest
from scripted_engine import ScriptedEngine, SlowEngine

from meds3.data import MedQuestion
from meds3.mcts import EngineFailure, Feed, Forest, SearchConfig, tree_shapes
from meds3.rollout import RolloutConfig
from meds3.rollout.ray_worker import RolloutWorker

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(8)]
SEARCH = SearchConfig(max_nodes=10)


def shapes(trees):
    """Trees or their stored (dict) form, compared on what a unit's result carries, values exactly."""
    return tree_shapes(trees, ("parent", "kind", "step", "value"), digits=None)


def test_a_feed_topped_up_while_the_forest_runs_gives_the_same_trees():
    feed = Feed()
    feed.put(QS[:2])
    got = []
    forest = Forest(SlowEngine(0.01), SEARCH, live_trees=3)

    def top_up():
        for i in range(2, len(QS), 2):
            time.sleep(0.05)
            feed.put(QS[i:i + 2])
        feed.close()

    thread = threading.Thread(target=top_up)
    thread.start()
    for tree in forest.run(feed):
        got.append(tree)
    thread.join()
    want = list(Forest(ScriptedEngine(), SEARCH, live_trees=3, schedule="rounds").run(QS))
    assert shapes(got) == shapes(want) and len(got) == len(QS)


def test_a_feed_needs_the_async_schedule():
    with pytest.raises(ValueError, match="async"):
        Forest(ScriptedEngine(), SEARCH, schedule="rounds").run(Feed())


def worker(engine, schedule="async"):
    config = RolloutConfig(search=SEARCH, live_trees=3, schedule=schedule)
    return RolloutWorker(0, config, engine_factory=lambda c: engine)


def run_units_at_once(actor, units):
    out: dict[int, object] = {}

    def call(i, unit):
        try:
            out[i] = actor.run_unit(i, [q.to_dict() for q in unit])
        except Exception as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, u)) for i, u in enumerate(units)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return [out[i] for i in range(len(units))]


def test_units_sent_together_share_one_forest_and_get_their_own_trees():
    engine = SlowEngine(0.01)
    actor = worker(engine)
    units = [QS[:3], QS[3:5], QS[5:]]
    results = run_units_at_once(actor, units)
    want = shapes(Forest(ScriptedEngine(), SEARCH, live_trees=3, schedule="rounds").run(QS))
    for unit, result in zip(units, results):
        assert [t["question"]["id"] for t in result["trees"]] == [q.id for q in unit]  # its own, in order
        assert shapes(result["trees"]) == {q.id: want[q.id] for q in unit}
        assert result["generated_tokens"] > 0 and result["seconds"] >= 0
    assert sum(r["generated_tokens"] for r in results) == actor._stream.forest.stats.generated_tokens
    # one forest, one engine: calls carried requests of trees from different units
    assert max(engine.calls) > 3
    again = actor.run_unit(9, [QS[0].to_dict()])  # the stream keeps serving later units
    assert shapes(again["trees"]) == {"q0": want["q0"]}


def test_a_fatal_engine_error_fails_every_waiting_unit_and_every_later_one():
    class Dies(ScriptedEngine):
        def generate(self, requests):
            if len(self.calls) >= 2:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            time.sleep(0.02)
            return super().generate(requests)

    actor = worker(Dies())
    results = run_units_at_once(actor, [QS[:2], QS[2:4]])
    assert all(isinstance(r, EngineFailure) for r in results), results
    assert actor.broken
    with pytest.raises(EngineFailure, match="broken in an earlier unit"):
        actor.run_unit(5, [QS[5].to_dict()])


def test_the_rounds_schedule_keeps_one_forest_per_unit():
    actor = worker(ScriptedEngine(), schedule="rounds")
    result = actor.run_unit(0, [q.to_dict() for q in QS[:2]])
    assert actor._stream is None and len(result["trees"]) == 2
