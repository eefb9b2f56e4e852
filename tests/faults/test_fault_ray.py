"""Fault injection on the Ray scheduler (issue: long jobs that survive faults): a hung engine is
timed out and its actor replaced, a poison question is isolated by halving its unit, an actor
that fails before any has started is replaced, and an error while storing a unit is the error
the job stops with (not one from the clean-up after it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from scripted_engine import ScriptedEngine

from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import SearchConfig
from meds3.rollout import RayConfig, RolloutConfig, TreeStore, run_ray_rollout

ray = pytest.importorskip("ray")

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(6)]


def job(tmp_path, schedule="auto", **ray_kw):
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), live_trees=2, flush_every=1,
                         search=SearchConfig(max_nodes=6), ray=RayConfig(enabled=True, **ray_kw), schedule=schedule)


def stored(config):
    return sorted(t.question.id for t in TreeStore(Path(config.output_dir) / "trees").iter_trees())


class HangingEngine(ScriptedEngine):
    """Never returns for question 4, as a wedged GPU would."""

    def generate(self, requests):
        if any("Question 4?" in r.prompt for r in requests):
            time.sleep(3600)
        return super().generate(requests)


def hanging(config):
    return HangingEngine()


@pytest.mark.parametrize("schedule", ["rounds", "async"])
def test_a_hung_engine_is_timed_out_its_actor_replaced_and_its_question_isolated(ray_instance, tmp_path, schedule):
    """Rounds: an actor runs its units in order. Async: a streaming actor's units share one forest,
    so a hang stalls both; either way the poison question ends up alone and failed."""
    # a replacement actor's start (a Ray worker importing meds3 and these tests' modules) may take
    # longer than the 4 s a unit gets on a slow or busy machine: starts get their own, generous deadline
    config = job(tmp_path, schedule, unit_size=2, max_unit_retries=0, unit_timeout_s=4.0, start_timeout_s=120.0,
                 max_worker_replacements=4)
    summary = run_ray_rollout(config, progress=False, engine_factory=hanging)
    r = summary["ray"]
    [failed] = r["failed_units"]
    assert failed["question_ids"] == ["q4"] and "unit_timeout_s" in failed["reason"]
    # (q4, q5) timed out (perhaps twice: the first time another unit was queued behind it, so
    # the actor might have hung on that one), then q4 alone
    assert r["timeouts"] in (2, 3) and r["splits"] == 1
    assert stored(config) == ["q0", "q1", "q2", "q3", "q5"]
    assert sum(not w["alive"] for w in r["per_worker"]) == 2  # both hung actors were killed


class FirstBuildDiffers:
    """An engine factory for 'one bad node': the first build across all actors (claimed with an
    exclusive file) does ``bad``; every later build waits ``delay`` seconds and gives a working
    engine."""

    def __init__(self, marker: str, bad: str, delay: float = 0.0):
        self.marker, self.bad, self.delay = marker, bad, delay

    def __call__(self, config):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(self.delay)
            return ScriptedEngine()
        if self.bad == "fails":
            raise OSError("CUDA driver not found on this node")
        if self.bad == "hangs":  # a node stuck loading weights
            time.sleep(3600)
        return BrokenGPU()  # "broken": builds, but every call fails as after a lost CUDA context


def test_an_actor_that_fails_before_any_started_is_replaced(ray_instance, tmp_path):
    config = job(tmp_path, unit_size=2)
    factory = FirstBuildDiffers(str(tmp_path / "marker"), "fails", delay=3)
    summary = run_ray_rollout(config, progress=False, engine_factory=factory)
    r = summary["ray"]
    assert r["start_failures"] == 1 and r["workers"] == 3 and r["failed_units"] == []
    assert stored(config) == [q.id for q in QS]


def test_an_error_while_storing_is_not_hidden_by_the_final_flush(ray_instance, tmp_path, monkeypatch):
    from meds3.rollout.ray_runner import RayRolloutJob

    real_store = RayRolloutJob.store_result
    calls = []

    def store_then_fail(self, unit, result):
        calls.append(unit.id)
        if len(calls) == 2:
            monkeypatch.setattr(TreeStore, "flush", lambda self: (_ for _ in ()).throw(RuntimeError("flush failed")))
            raise OSError("No space left on device")
        return real_store(self, unit, result)

    monkeypatch.setattr(RayRolloutJob, "store_result", store_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        run_ray_rollout(job(tmp_path, unit_size=2), progress=False,
                        engine_factory=lambda config: ScriptedEngine())


class BrokenGPU(ScriptedEngine):
    """Every call fails as after a lost CUDA context."""

    def generate(self, requests):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize("schedule", ["rounds", "async"])
def test_an_actor_whose_engine_fails_for_good_is_replaced_and_its_unit_retried(ray_instance, tmp_path, schedule):
    config = job(tmp_path, schedule, unit_size=2)
    factory = FirstBuildDiffers(str(tmp_path / "marker"), "broken")
    summary = run_ray_rollout(config, progress=False, engine_factory=factory)
    r = summary["ray"]
    assert r["failed_units"] == [] and summary["failed"] == 0  # no tree stored as failed
    assert stored(config) == [q.id for q in QS]
    broken = [w for w in r["per_worker"] if not w["alive"]]
    assert len(broken) == 1 and "EngineFailure" in broken[0]["died"] and r["workers"] == 3
    assert r["retries"] >= 1


def test_an_actor_whose_start_hangs_is_killed_and_replaced(ray_instance, tmp_path):
    # the hung actor is the only one; the deadline leaves a slow or busy machine room to start
    # the replacement, which is held to the same deadline: a Ray worker importing meds3 and these
    # tests' modules, about 1.5 s on two idle cores (a scripted engine never loads torch)
    config = job(tmp_path, unit_size=2, unit_timeout_s=6.0, start_timeout_s=10.0, num_workers=1)
    factory = FirstBuildDiffers(str(tmp_path / "marker"), "hangs", delay=1)
    summary = run_ray_rollout(config, progress=False, engine_factory=factory)
    r = summary["ray"]
    assert r["failed_units"] == [] and stored(config) == [q.id for q in QS]
    [hung] = [w for w in r["per_worker"] if not w["alive"]]
    assert "start ran past ray.start_timeout_s (10 s)" in hung["died"] and r["timeouts"] >= 1
