"""Issue 15 item 1: failed trees are searched again on a rerun (bounded, recorded), and an
engine that keeps failing stops the job (local) or its Ray unit, instead of failing every tree."""

from __future__ import annotations

import pytest
from scripted_engine import ScriptedEngine

from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import EngineFailure, Forest, SearchConfig
from meds3.rollout import RolloutConfig, TreeStore, run_rollout
from meds3.train.data import iter_trees

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B",
                  task_type="multiple_choice") for i in range(6)]


class DeadEngine(ScriptedEngine):
    """Every call fails, as after a lost CUDA context (without the fatal message)."""

    def generate(self, requests):
        self.calls.append(len(requests))
        raise RuntimeError("engine down")


class CudaLostEngine(ScriptedEngine):
    """Works for ``good`` calls, then raises a CUDA error."""

    def __init__(self, good: int):
        super().__init__()
        self.good = good

    def generate(self, requests):
        if len(self.calls) >= self.good:
            self.calls.append(len(requests))
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().generate(requests)


def job(tmp_path, **kw) -> RolloutConfig:
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), live_trees=3, flush_every=1,
                         search=SearchConfig(max_nodes=8), **kw)


def test_a_failed_tree_is_searched_again_and_its_newest_tree_wins(tmp_path):
    config = job(tmp_path)
    first = run_rollout(config, engine=ScriptedEngine(fail_prompts=("Question 3?",)), progress=False)
    assert (first["trees"], first["failed"]) == (6, 1)
    engine = ScriptedEngine()
    second = run_rollout(config, engine=engine, progress=False)
    assert engine.calls, "the failed tree was not searched again"
    assert (second["trees"], second["complete"], second["failed"]) == (6, 6, 0)  # each question once
    assert second["tree_attempts"] == {"retried": 1, "given_up": []}
    store = TreeStore(tmp_path / "out" / "trees")
    assert store.attempts()["q3"] == 2 and store.attempts()["q0"] == 1  # both attempts are kept on disk
    trees = list(iter_trees(str(tmp_path / "out")))  # training reads the newest tree only
    assert sorted(t.question.id for t in trees) == [q.id for q in QS]
    assert all(t.status == "complete" for t in trees)


def test_retries_stop_after_max_tree_attempts(tmp_path):
    config = job(tmp_path, max_tree_attempts=2)
    for _ in range(2):
        run_rollout(config, engine=ScriptedEngine(fail_prompts=("Question 3?",)), progress=False)
    engine = ScriptedEngine()
    summary = run_rollout(config, engine=engine, progress=False)
    assert engine.calls == []  # given up: not searched a third time
    assert summary["tree_attempts"] == {"retried": 1, "given_up": ["q3"]}
    assert summary["failed"] == 1 and summary["trees"] == 6


def test_a_dead_engine_stops_the_local_job_and_loses_nothing(tmp_path):
    config = job(tmp_path, max_engine_failures=2)
    with pytest.raises(EngineFailure, match="2 consecutive rounds"):
        run_rollout(config, engine=DeadEngine(), progress=False)
    assert list(TreeStore(tmp_path / "out" / "trees").iter_trees()) == []  # no tree recorded as failed
    summary = run_rollout(config, engine=ScriptedEngine(), progress=False)
    assert (summary["complete"], summary["failed"], summary["tree_attempts"]["retried"]) == (6, 0, 0)


def test_a_cuda_error_stops_at_once_and_keeps_finished_trees(tmp_path):
    engine = CudaLostEngine(good=12)
    with pytest.raises(EngineFailure, match="the engine failed for good: RuntimeError: CUDA error"):
        run_rollout(job(tmp_path), engine=engine, progress=False)
    assert len(engine.calls) == 13  # no retry of a fatal error
    stored = list(TreeStore(tmp_path / "out" / "trees").iter_trees())
    assert all(t.status == "complete" for t in stored)


def test_trees_failed_in_a_failed_round_are_kept_back_until_the_engine_works():
    # Round 1 fails whole (call 1, its retry, then each tree's call and retry): its trees are
    # yielded, failed, only once a later call succeeds; the job goes on.
    engine = ScriptedEngine(fail_calls={1, 2, 3, 4})
    forest = Forest(engine, SearchConfig(max_nodes=8), live_trees=1, max_engine_failures=2)
    trees = list(forest.run(QS[:3]))
    assert [t.status for t in trees] == ["failed", "complete", "complete"]


def test_a_ray_worker_raises_engine_failure_and_then_refuses_work():
    from meds3.rollout.ray_worker import RolloutWorker

    engine = DeadEngine()
    config = RolloutConfig(live_trees=2, max_engine_failures=1, search=SearchConfig(max_nodes=8))
    worker = RolloutWorker(0, config, engine_factory=lambda c: engine)
    with pytest.raises(EngineFailure, match="worker 0, unit 7"):
        worker.run_unit(7, [q.to_dict() for q in QS[:2]])
    calls = len(engine.calls)
    with pytest.raises(EngineFailure, match="broken in an earlier unit"):
        worker.run_unit(8, [q.to_dict() for q in QS[2:4]])
    assert len(engine.calls) == calls  # a broken actor does not burn the next unit's trees
