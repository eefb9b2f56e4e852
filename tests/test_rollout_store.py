"""Tree store and local runner: atomic shards, exact round trips, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_engine import ScriptedEngine

from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import Forest, SearchConfig, Tree
from meds3.rollout import RolloutConfig, TreeStore, run_rollout

TESTS = Path(__file__).resolve().parent
QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B",
                  task_type="multiple_choice", domain="medical_exam" if i % 2 else "biomedical_literature")
      for i in range(12)]


def make_trees(n=3):
    return list(Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=2).run(QS[:n]))


def test_store_round_trip_is_exact(tmp_path):
    trees = make_trees(3)
    store = TreeStore(tmp_path, flush_every=2)
    store.add_many(trees)
    assert len(store.shards()) == 1  # two trees flushed, one buffered
    assert store.done_ids() == {"q0", "q1", "q2"}
    store.close()
    assert len(store.shards()) == 2
    again = {t.question.id: t for t in TreeStore(tmp_path).iter_trees()}
    assert [again[t.question.id].to_dict() for t in trees] == [t.to_dict() for t in trees]
    assert not list(tmp_path.glob(".*.tmp"))


def test_store_refuses_a_tree_twice(tmp_path):
    tree = make_trees(1)[0]
    store = TreeStore(tmp_path, flush_every=1)
    store.add(tree)
    with pytest.raises(ValueError, match="already added"):
        store.add(Tree.from_dict(tree.to_dict()))


def test_stale_temporary_shard_is_removed(tmp_path):
    from meds3.io import hostname

    gone = subprocess.Popen(["true"])
    gone.wait()  # a reaped process: its pid names no running process
    stale = tmp_path / f".trees-1-local-{gone.pid}-00000.jsonl.{gone.pid}@{hostname()}.0123abcd.tmp"
    stale.write_text('{"half": ')
    TreeStore(tmp_path)
    assert not stale.exists()


def job_config(tmp_path, **kw):
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), live_trees=3, flush_every=1,
                         search=SearchConfig(max_nodes=10), **kw)


def test_local_runner_summary_and_resume(tmp_path):
    config = job_config(tmp_path, limit=5)
    summary = run_rollout(config, engine=ScriptedEngine(), progress=False)
    assert summary["trees"] == 5 and summary["complete"] == 5
    assert set(summary["correct_leaf_rate_by_domain"]) == {"medical_exam", "biomedical_literature"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary.to_dict()
    assert summary.output_dir == str(tmp_path / "out")
    assert (tmp_path / "out" / "config.yaml").exists()
    # A rerun with a larger limit searches only the new questions.
    engine = ScriptedEngine()
    config.limit = 8
    assert run_rollout(config, engine=engine, progress=False)["trees"] == 8
    searched = {t.question.id for t in TreeStore(tmp_path / "out" / "trees").iter_trees()}
    assert searched == {f"q{i}" for i in range(8)}
    # Nothing left: the engine is not even called.
    engine = ScriptedEngine()
    run_rollout(config, engine=engine, progress=False)
    assert engine.calls == []


KILLABLE = """
import sys, time
sys.path.insert(0, {tests!r})
from scripted_engine import ScriptedEngine
from meds3.config import load_config
from meds3.rollout import RolloutConfig, run_rollout

class Slow(ScriptedEngine):
    def generate(self, requests):
        time.sleep({delay})
        return super().generate(requests)

run_rollout(load_config(RolloutConfig, {config!r}), engine=Slow(), progress=False)
"""


def run_job(config_path, delay, kill_after_shards=None):
    code = KILLABLE.format(tests=str(TESTS), config=str(config_path), delay=delay)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after_shards is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        return
    trees_dir = Path(config_path).parent / "trees"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(trees_dir.glob("trees-*.jsonl"))) < kill_after_shards:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_job_then_resume_loses_and_duplicates_nothing(tmp_path):
    from meds3.config import save_config

    reference = job_config(tmp_path / "ref")
    run_rollout(reference, engine=ScriptedEngine(), progress=False)
    config = job_config(tmp_path / "killed")
    out = Path(config.output_dir)
    out.mkdir(parents=True)
    save_config(config, out / "job.yaml")
    run_job(out / "job.yaml", delay=0.02, kill_after_shards=3)
    shards_before = list((out / "trees").glob("trees-*.jsonl"))
    assert 3 <= len(shards_before) < len(QS)  # killed part-way
    run_job(out / "job.yaml", delay=0.0)
    ids = []
    for shard in (out / "trees").glob("trees-*.jsonl"):
        for line in shard.read_text().splitlines():
            ids.append(json.loads(line)["question"]["id"])  # every line parses
    assert sorted(ids) == sorted(q.id for q in QS)  # each question exactly once
    ref = {t.question.id: t.to_dict() for t in TreeStore(Path(reference.output_dir) / "trees").iter_trees()}
    got = {t.question.id: t.to_dict() for t in TreeStore(out / "trees").iter_trees()}
    assert got == ref  # and the same trees as an uninterrupted run
