"""The actor body every meds3 Ray actor shares (``EngineActor``), run as a plain object in a fresh
process: its torch thread count holds whether the engine loads torch before or after it starts,
and an engine that does not use torch never loads it (2 s of every actor start on two cores).
No Ray here: what Ray adds (placement, death, replacement) is tested in test_rollout_ray.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testing_utils import require_tiny_model

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
