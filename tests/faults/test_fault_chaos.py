"""Chaos: a rollout job killed with SIGKILL at 5 seeded random moments, rerun after each kill,
ends with the same store as an uninterrupted run, each question exactly once.

The job runs in a child process (the local runner, what ``meds3 rollout`` calls) with a
scripted engine slowed a little, so the kills land while trees are being searched and shards
written; each kill comes a seeded random delay after the store has grown since the start.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from scripted_engine import ScriptedEngine, slow_rollout_command
from search_helpers import stored_ids

from meds3.config import save_config
from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import SearchConfig, tree_shapes
from meds3.rollout import RolloutConfig, TreeStore, run_rollout

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(24)]


def shapes(out: Path) -> dict:
    return tree_shapes(TreeStore(out / "trees").iter_trees(), ("parent", "kind", "verdict", "value"))


def config(tmp_path: Path, name: str) -> RolloutConfig:
    seeds = tmp_path / "seeds.jsonl"
    if not seeds.exists():
        save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / name), live_trees=3, flush_every=1,
                         search=SearchConfig(max_nodes=10))


def test_five_sigkills_at_random_moments_lose_and_duplicate_nothing(tmp_path):
    rng = random.Random(20261202)
    reference = config(tmp_path, "reference")
    run_rollout(reference, engine=ScriptedEngine(), progress=False)

    job = config(tmp_path, "chaos")
    out = Path(job.output_dir)
    out.mkdir(parents=True)
    save_config(job, tmp_path / "job.yaml")
    kills = 0
    for _ in range(5):
        before = len(stored_ids(out))
        if before == len(QS):
            break
        proc = subprocess.Popen(slow_rollout_command(tmp_path / "job.yaml", 0.1), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and len(stored_ids(out)) == before:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
        proc.stderr.close()
        assert len(set(stored_ids(out))) == len(stored_ids(out))  # never a question twice
    assert kills == 5 and len(stored_ids(out)) < len(QS)  # really interrupted 5 times, not run through
    run_rollout(job, engine=ScriptedEngine(), progress=False)  # the last rerun finishes the job
    assert stored_ids(out) == sorted(q.id for q in QS)  # each question exactly once
    assert shapes(out) == shapes(Path(reference.output_dir))  # the same trees as without faults
    assert not list((out / "trees").glob("*.tmp*"))  # no temporary file left behind
