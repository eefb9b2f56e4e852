"""The actor body every meds3 Ray actor shares (``EngineActor``), run as a plain object in a fresh
process: its torch thread count holds whether the engine loads torch before or after it starts,
and an engine that does not use torch never loads it (2 s of every actor start on two cores).
Then the end of an actor: the driver waits for its process to exit, not only for Ray to fail
its calls. No Ray here: what Ray adds (placement, death, replacement) is tested in test_rollout_ray.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing_utils import proc_stat, require_tiny_model

TESTS = Path(__file__).resolve().parent
# Not torch's default (the machine's cores). Torch caps a count read from the environment at the
# cores, so it must be below them to tell the configured count from the default.
THREADS = 1
pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores: 1 thread is the default")

CHILD = """
import json, sys
from meds3.eval import EvalConfig
from meds3.eval.ray_eval import EvalWorker
from meds3.rollout import RayConfig

def scripted(config):
    from scripted_engine import ScriptedEngine
    return ScriptedEngine()

def tiny(config):
    from meds3.engines import build_engine
    from model_paths import model_path
    return build_engine(model_path("tiny-random-llama"), backend="transformers")

factory = {"scripted": scripted, "tiny": tiny}[sys.argv[1]]
if sys.argv[2] == "torch-loaded":
    import torch  # loaded before the actor starts, as by a factory's module that imports torch
worker = EvalWorker(0, EvalConfig(ray=RayConfig(enabled=True, torch_threads=%d)), engine_factory=factory)
print(json.dumps({"torch_loaded": "torch" in sys.modules, **worker.info()}))
""" % THREADS


def actor_info(engine: str, torch_state: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", CHILD, engine, torch_state], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_engine_without_torch_never_loads_it():
    info = actor_info("scripted", "torch-not-loaded")
    assert info["torch_loaded"] is False and info["torch_threads"] is None
    assert info["node"] == "" and info["pid"] > 0  # outside Ray: no Ray instance was started to ask


@require_tiny_model
def test_an_engine_that_loads_torch_gets_the_configured_threads():
    info = actor_info("tiny", "torch-not-loaded")
    assert info["torch_loaded"] is True and info["torch_threads"] == THREADS


def test_torch_loaded_before_the_actor_starts_gets_the_configured_threads():
    info = actor_info("scripted", "torch-loaded")
    assert info["torch_loaded"] is True and info["torch_threads"] == THREADS


# -- the end of an actor: its process, not only Ray's word --------------------------------------

def test_wait_exited_returns_once_the_process_has_exited():
    from meds3.rollout.ray_units import process_exited, wait_exited

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    assert not process_exited(proc.pid)
    assert wait_exited([proc.pid], timeout=60) == []
    assert proc.poll() is not None  # it had exited: reaped at once


def test_wait_exited_returns_what_still_runs_at_the_timeout():
    from meds3.rollout.ray_units import wait_exited

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert wait_exited([proc.pid], timeout=0.2) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_has_exited():
    """An exited child not yet reaped by its parent keeps only its exit status: its memory is free."""
    from meds3.rollout.ray_units import process_exited

    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 60
    while proc_stat(proc.pid)[0] != "Z":  # not reaped: proc.poll() is not called
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert process_exited(proc.pid) and Path(f"/proc/{proc.pid}").exists()
    proc.wait()
