"""The Ray rollout runner on a local Ray instance with 2 CPU actors: an actor killed mid-job,
a unit that keeps killing its actor, a driver killed and rerun (scripted engine), the
``--ray`` flags, and the tiny model's trees on Ray with a killed actor equal to the local
runner's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_helpers import kill_first_worker
from scripted_engine import ScriptedEngine, SlowEngine
from search_helpers import stored_ids
from testing_utils import alive

from meds3.config import ConfigError, load_config, save_config
from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import SearchConfig, tree_shapes
from meds3.rollout import RayConfig, RolloutConfig, TreeStore, run_ray_rollout, run_rollout
from meds3.rollout.ray_runner import make_units

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(12)]
TINY_SEARCH = ["search.max_nodes=4", "search.rollout_budget=2", "search.min_rollouts=2",
               "search.max_step_tokens=8", "search.max_finish_tokens=8", "search.max_rollout_tokens=8"]


def scripted(config):
    return ScriptedEngine()


def slow(config):
    return SlowEngine()


class PoisonedEngine(ScriptedEngine):
    """Kills its own process on one question, as an out-of-memory kill would."""

    def generate(self, requests):
        if any("Question 3?" in r.prompt for r in requests):
            os._exit(1)
        return super().generate(requests)


def poisoned(config):
    return PoisonedEngine()


def shapes(trees):
    return tree_shapes(trees, ("parent", "kind", "verdict", "value"))


def job(tmp_path, name, **ray_kw):
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / name), live_trees=2, flush_every=1,
                         search=SearchConfig(max_nodes=10), ray=RayConfig(enabled=True, **ray_kw))


def local_reference(tmp_path):
    config = job(tmp_path, "local")
    config.ray.enabled = False
    run_rollout(config, engine=ScriptedEngine(), progress=False)
    return shapes(TreeStore(Path(config.output_dir) / "trees").iter_trees())


# -- without Ray ---------------------------------------------------------------------------
def test_ray_config_is_validated_by_key():
    with pytest.raises(ConfigError, match="ray: num_workers must be >= 1"):
        load_config(RolloutConfig, None, ["ray.num_workers=0"])
    with pytest.raises(ConfigError, match="unknown key 'ray.workers'"):
        load_config(RolloutConfig, None, ["ray.workers=2"])
    config = load_config(RolloutConfig, None, ["ray.enabled=true", "ray.num_cpus_per_worker=2", "ray.unit_size=3"])
    assert (config.ray.enabled, config.ray.threads, config.ray.replacements) == (True, 2, 2 * (2 + 1 + 2))
    assert [[q.id for q in u.questions] for u in make_units(QS[:7], 3)] == [["q0", "q1", "q2"], ["q3", "q4", "q5"],
                                                                              ["q6"]]


def test_an_engine_object_cannot_go_to_ray(tmp_path):
    with pytest.raises(ValueError, match="engine_factory"):
        run_rollout(job(tmp_path, "x"), engine=ScriptedEngine(), progress=False)


# -- on a local Ray instance ----------------------------------------------------------------
def test_killed_actor_unit_is_rescheduled_and_every_question_stored_once(ray_instance, tmp_path):
    killed = []
    config = job(tmp_path, "ray", unit_size=2)
    summary = run_ray_rollout(config, progress=False, engine_factory=slow, on_unit_done=kill_first_worker(killed))
    assert stored_ids(config.output_dir) == sorted(q.id for q in QS)
    assert shapes(TreeStore(Path(config.output_dir) / "trees").iter_trees()) == local_reference(tmp_path)
    r = summary["ray"]
    assert summary["trees"] == 12 and r["trees_searched"] == 12 and r["failed_units"] == []
    assert r["retries"] == 1 and r["workers"] == 3  # one replacement
    assert [w["alive"] for w in r["per_worker"]] == [w["worker"] != killed[0] for w in r["per_worker"]]
    assert sum(w["trees"] for w in r["per_worker"]) == 12
    assert json.loads((Path(config.output_dir) / "failed_units.json").read_text()) == []


def test_unit_that_keeps_failing_is_recorded_and_the_rest_finish(ray_instance, tmp_path):
    config = job(tmp_path, "ray", unit_size=2, max_unit_retries=1)
    summary = run_ray_rollout(config, progress=False, engine_factory=poisoned)
    [failed] = summary["ray"]["failed_units"]
    # Unit 1 (q2, q3) fails twice, then its halves get one attempt each: q2 is stored, q3 (the
    # poison question) is recorded alone.
    assert (failed["split_from"], failed["question_ids"], failed["attempts"]) == (1, ["q3"], 2)
    assert "died" in failed["reason"] and len(failed["errors"]) == 3
    # Unit 1 is retried once; a unit queued behind it on the dying actor may be rescheduled
    # too, depending on timing, so retries is at least 1.
    assert summary["trees"] == 11 and summary["ray"]["retries"] >= 1 and summary["ray"]["splits"] == 1
    assert json.loads((Path(config.output_dir) / "failed_units.json").read_text()) == [failed]
    # A rerun searches exactly the failed question; the local runner resumes a Ray job's store.
    config.ray.enabled = False
    shards = set((Path(config.output_dir) / "trees").glob("trees-*.jsonl"))
    assert run_rollout(config, engine=ScriptedEngine(), progress=False)["trees"] == 12
    new = set((Path(config.output_dir) / "trees").glob("trees-*.jsonl")) - shards
    assert sorted(json.loads(line)["question"]["id"] for f in new for line in f.read_text().splitlines()) == ["q3"]
    assert stored_ids(config.output_dir) == sorted(q.id for q in QS)
    assert shapes(TreeStore(Path(config.output_dir) / "trees").iter_trees()) == local_reference(tmp_path)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import test_rollout_ray as t
from meds3.config import load_config
from meds3.rollout import RolloutConfig, run_ray_rollout

run_ray_rollout(load_config(RolloutConfig, {config!r}), progress=False, engine_factory=t.slow)
"""


def test_driver_killed_mid_job_then_rerun_resumes_without_duplicates(ray_instance, tmp_path):
    config = job(tmp_path, "ray", unit_size=1, address=ray_instance,
                 runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    out = Path(config.output_dir)
    out.mkdir(parents=True)
    save_config(config, out / "job.yaml")
    code = DRIVER.format(tests=str(TESTS), config=str(out / "job.yaml"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "trees").glob("trees-*.jsonl"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = stored_ids(out)
    assert 3 <= len(before) < len(QS), proc.stderr.read().decode()[-2000:]  # killed part-way
    summary = run_ray_rollout(config, progress=False, engine_factory=scripted)
    assert summary["ray"]["trees_searched"] == len(QS) - len(before)
    assert stored_ids(out) == sorted(q.id for q in QS)  # each question exactly once
    assert shapes(TreeStore(out / "trees").iter_trees()) == local_reference(tmp_path)


def test_ray_flags_of_the_rollout_command(monkeypatch, capsys):
    import meds3.rollout
    from meds3.cli import main

    seen = []
    from meds3.results import RolloutResult

    monkeypatch.setattr(meds3.rollout, "run_rollout",
                        lambda config, progress: seen.append(config) or RolloutResult(config.output_dir))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    main(["rollout", "--ray", "ray.num_workers=4"])
    main(["rollout", "--ray-address", "auto"])
    main(["rollout"])
    assert [(c.ray.enabled, c.ray.address, c.ray.num_workers) for c in seen] == [(True, None, 4), (True, "auto", 2),
                                                                                (False, None, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["rounds", "async"])
def test_tiny_model_on_ray_with_a_killed_actor_equals_the_local_runner(ray_instance, tmp_path, capsys, schedule):
    """Rounds: an actor runs its units in order, so the unit queued behind the first is lost with
    the actor and retried. Async (streaming actors): the queued unit ran beside the first one and
    may have finished before the kill (then it is stored, not retried)."""
    from meds3.cli import main

    seeds = REPO / "seed_data" / "clinical_calc.jsonl"
    common = [f"seeds=[{seeds}]", "limit=4", "model=tiny-random-llama", "live_trees=2", f"schedule={schedule}",
              *TINY_SEARCH]
    assert main(["rollout", "--no-progress", f"output_dir={tmp_path / 'local'}", *common]) == 0
    capsys.readouterr()
    config = load_config(RolloutConfig, None, [f"output_dir={tmp_path / 'ray'}", "ray.enabled=true",
                                               "ray.unit_size=1", *common])
    summary = run_ray_rollout(config, progress=False, on_unit_done=kill_first_worker([]))
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert summary.output_dir == str(tmp_path / "ray") and local["output_dir"] == str(tmp_path / "local")
    same = lambda d: {k: v for k, v in d.items() if k not in ("ray", "output_dir")}  # noqa: E731
    assert same(summary.to_dict()) == same(local)  # the same end summary
    r = summary["ray"]
    assert r["failed_units"] == [] and sum(w["trees"] for w in r["per_worker"]) == 4
    if schedule == "rounds":
        assert r["retries"] == 1 and r["workers"] == 3
    else:
        assert r["retries"] <= 1 and r["workers"] in (2, 3)
    assert stored_ids(tmp_path / "ray") == sorted(stored_ids(tmp_path / "local"))  # each question once
    got = shapes(TreeStore(tmp_path / "ray" / "trees").iter_trees())
    want = shapes(TreeStore(tmp_path / "local" / "trees").iter_trees())
    assert got == want and len(got) == 4


def broken(config):
    raise OSError("model weights not found")


def test_an_engine_that_cannot_be_built_stops_the_job_with_its_reason(ray_instance, tmp_path):
    config = job(tmp_path, "ray", unit_size=4)
    with pytest.raises(RuntimeError, match="no rollout worker could start: .*model weights not found"):
        run_ray_rollout(config, progress=False, engine_factory=broken)
    assert stored_ids(config.output_dir) == []


def test_cluster_example_config_loads():
    config = load_config(RolloutConfig, REPO / "examples" / "cluster" / "rollout_cluster.yaml", [])
    assert (config.backend, config.ray.enabled, config.ray.address, config.ray.num_gpus_per_worker) == \
        ("vllm", True, "auto", 1.0)


# -- no shared file system: the adapter travels through Ray -----------------------------------

def shipped_copy_engine(config):
    """In the actor: the adapter must be the actor's own unpacked copy, not the driver's path."""
    from meds3.rollout.ray_worker import default_engine_factory

    assert config.adapter and Path(config.adapter).name.startswith("meds3-adapter-"), config.adapter
    assert (Path(config.adapter) / "adapter_config.json").is_file()
    return default_engine_factory(config)


def tiny_adapter(path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from meds3.engines import resolve_model

    model = AutoModelForCausalLM.from_pretrained(str(resolve_model("tiny-random-llama")))
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(path)
    return str(path)


def test_actors_search_with_the_adapter_shipped_through_ray(ray_instance, tmp_path):
    from meds3.rollout.shipping import dir_sha256

    adapter = tiny_adapter(tmp_path / "driver_only" / "adapter")
    seeds = REPO / "seed_data" / "clinical_calc.jsonl"
    common = [f"seeds=[{seeds}]", "limit=2", "model=tiny-random-llama", "live_trees=2", f"adapter={adapter}",
              *TINY_SEARCH]
    # one actor (each loads torch, transformers and the model: 8 s of CPU): the shipping is the same for each
    config = load_config(RolloutConfig, None, [f"output_dir={tmp_path / 'ray'}", "ray.enabled=true",
                                               "ray.num_workers=1", "ray.unit_size=1", *common])
    summary = run_ray_rollout(config, progress=False, engine_factory=shipped_copy_engine)
    assert summary["ray"]["failed_units"] == [] and summary["failed"] == 0
    trees = list(TreeStore(tmp_path / "ray" / "trees").iter_trees())
    want = dir_sha256(adapter)
    assert len(trees) == 2 and want and {t.adapter_sha256 for t in trees} == {want}
    # the job returns when its actors' processes have exited (their memory is free), not only
    # when Ray fails their calls
    pids = [w["pid"] for w in summary["ray"]["per_worker"]]
    assert pids and all(pids) and not any(alive(pid) for pid in pids)
    local = load_config(RolloutConfig, None, [f"output_dir={tmp_path / 'local'}", *common])
    run_rollout(local, progress=False)
    assert {t.adapter_sha256 for t in TreeStore(tmp_path / "local" / "trees").iter_trees()} == {want}


def test_actor_processes_are_awaited_on_their_own_node(ray_instance, monkeypatch):
    """The driver waits for a killed actor's process on the actor's node: by a task pinned there
    when the node is not the driver's (here the driver is made to think it runs elsewhere), and
    a node that cannot be reached counts its processes as still running."""
    import ray

    from meds3.rollout import ray_units

    node = ray.get_runtime_context().get_node_id()
    monkeypatch.setattr(ray_units, "_this_node", lambda: "a-driver-on-another-node")
    short = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    long = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert ray_units.wait_exited_on_nodes({node: [short.pid]}, time.monotonic() + 60) == {}
        assert short.poll() is not None  # it had exited when the task said so
        assert ray_units.wait_exited_on_nodes({node: [long.pid]}, time.monotonic() + 1) == {node: [long.pid]}
        lost = "e" * len(node)  # no such node
        assert ray_units.wait_exited_on_nodes({lost: [long.pid]}, time.monotonic() + 5) == {lost: [long.pid]}
    finally:
        long.kill()
        long.wait()
