"""The evolution loop end to end on tiny-random-llama: two iterations, every stage's outputs,
and resume after a crash.

The tiny random model never writes "The answer is ...", so the questions here use a test
task type (tests/parity_verifier.py) whose verifier reads the parity of the response length.
"""

from __future__ import annotations

import json

import pytest
from parity_verifier import ParityVerifier  # noqa: F401  (registers the parity-test task type)

from meds3.config import from_dict
from meds3.data.loaders import save_questions
from meds3.data.question import MedQuestion
from meds3.evolve import EvolveConfig, iteration_questions, run, split_seeds


def _seed_file(path, n):
    save_questions(path, [MedQuestion(id=f"p{i}", question=f"Is the answer to puzzle {i} even or odd?",
                                      answer=("even", "odd")[i % 2], task_type="parity-test") for i in range(n)])
    return path


def _config(tmp_path, **extra):
    data = {
        "output_dir": str(tmp_path / "evolve"), "iterations": 2, "base_model": "tiny-random-llama",
        "seeds": [str(_seed_file(tmp_path / "seeds.jsonl", 7))], "questions_per_iteration": 2, "held_out": 3,
        "rollout": {"live_trees": 2, "flush_every": 1,
                    # The tiny model never ends a response: its capped outputs count as verified.
                    "search": {"max_nodes": 5, "rollout_budget": 2, "min_rollouts": 2, "max_step_tokens": 12,
                               "max_finish_tokens": 16, "max_rollout_tokens": 16, "count_truncated": True}},
        "policy": {"max_steps": 2, "batch_size": 2, "max_length": 256},
        "prm": {"max_steps": 2, "batch_size": 2, "max_length": 256, "r": 8, "alpha": 16},
        "eval": {"n": 3, "selectors": ["majority", "p-vs"], "max_new_tokens": 16, "greedy": True},
    }
    data.update(extra)
    return from_dict(EvolveConfig, data)


def test_split_and_iteration_questions(tmp_path):
    config = _config(tmp_path)
    pool, held = split_seeds(config)
    assert [q.id for q in pool] == ["p0", "p1", "p2", "p3"]
    assert [q.id for q in held] == ["p4", "p5", "p6"]
    assert [q.id for q in iteration_questions(pool, 1, 3)] == ["p0", "p1", "p2"]
    assert [q.id for q in iteration_questions(pool, 2, 3)] == ["p3", "p0", "p1"]  # wraps around


def test_config_rejects_nothing_to_evaluate(tmp_path):
    with pytest.raises(ValueError, match="nothing to evaluate"):
        _config(tmp_path, held_out=0)


@pytest.mark.slow
def test_two_iterations_then_resume_after_crash(tmp_path, monkeypatch):
    import meds3.train

    config = _config(tmp_path)
    out = tmp_path / "evolve"
    real_train_prm = meds3.train.train_prm
    calls = []

    def crash_in_second_prm(cfg, progress=True):
        calls.append(cfg.output_dir)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_train_prm(cfg, progress=progress)

    monkeypatch.setattr(meds3.train, "train_prm", crash_in_second_prm)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(config, progress=False)
    assert (out / "iter2" / "rollout" / "manifest.json").exists()
    assert (out / "iter2" / "policy" / "manifest.json").exists()
    assert not (out / "iter2" / "prm" / "manifest.json").exists()
    monkeypatch.setattr(meds3.train, "train_prm", real_train_prm)

    report = run(config, progress=False)
    ran = {s["stage"]: not s["skipped"] for s in report["stages"]}
    assert ran == {"iter1/rollout": False, "iter1/policy": False, "iter1/prm": False, "iter2/rollout": False,
                   "iter2/policy": False, "iter2/prm": True, "iter0/eval": False, "iter1/eval": False,
                   "iter2/eval": True}

    # Every stage left its outputs and a manifest.
    for k in (1, 2):
        it = out / f"iter{k}"
        assert len(list((it / "rollout" / "trees").glob("*.jsonl"))) >= 1
        for stage in ("rollout", "policy", "prm", "eval"):
            assert json.loads((it / stage / "manifest.json").read_text())["status"] == "done"
        assert (it / "policy" / "adapter" / "adapter_config.json").exists()
        assert (it / "prm" / "adapter" / "adapter_config.json").exists()
        assert (it / "eval" / "results.json").exists()
    manifest = lambda stage: json.loads((out / stage / "manifest.json").read_text())  # noqa: E731
    assert manifest("iter1/rollout")["inputs"]["adapter"] is None  # policy 1 is the base model
    assert manifest("iter2/rollout")["inputs"]["adapter"].endswith("iter1/policy/adapter")
    assert len(manifest("iter2/policy")["inputs"]["trees"]) == 2  # trees accumulate
    assert manifest("iter0/eval")["inputs"]["adapter"] is None
    assert manifest("iter2/eval")["inputs"]["prm"].endswith("iter2/prm")

    # The report: base, iter1, iter2 x held-out x (greedy, majority, p-vs).
    policies = {(r["policy"], r["selector"]) for r in report["rows"]}
    for policy in ("base", "iter1", "iter2"):
        for selector in ("greedy", "majority", "p-vs"):
            assert (policy, selector) in policies
    assert all(r["questions"] == 3 for r in report["rows"])
    for name in ("report.json", "report.md", "report.csv", "accuracy_by_iteration.png", "held_out.jsonl"):
        assert (out / name).exists()
    assert json.loads((out / "report.json").read_text())["rows"] == report["rows"]


def _adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_three_iterations_train_on_every_iterations_trees(tmp_path):
    """A pool of 2 questions searched in each of 3 iterations: the trainers of iteration k use
    the paths of the trees of iterations k, k-1, ..., 1 (newest first), not only iteration 1's."""
    import torch

    config = _config(tmp_path, iterations=3, seeds=[str(_seed_file(tmp_path / "pool2.jsonl", 5))],
                     eval_base=False)
    config.prm.data.require_pos_and_neg = False  # accumulation is under test here, not the filter
    out = tmp_path / "evolve"
    report = run(config, progress=False)
    assert [(r["iteration"], r["trees"], r["failed"]) for r in report["search"]] == [
        ("iter1", 2, 0), ("iter2", 2, 0), ("iter3", 2, 0)]
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in report["rows"])
    for k in (1, 2, 3):
        assert [q["id"] for q in map(json.loads, (out / f"iter{k}" / "questions.jsonl").read_text().splitlines())] \
            == ["p0", "p1"]  # the pool wraps: every question in every iteration
    for stage in ("policy", "prm"):
        manifest = json.loads((out / "iter3" / stage / "manifest.json").read_text())
        assert manifest["inputs"]["trees"] == [str(out / f"iter{k}" / "rollout") for k in (3, 2, 1)]
        sources = {json.loads(line)["source"] for line in (out / "iter3" / stage / "data.jsonl").read_text()
                   .splitlines()}
        assert {str(out / "iter2" / "rollout"), str(out / "iter3" / "rollout")} <= sources, (stage, sources)
        earlier = {json.loads(line)["source"] for line in (out / "iter2" / stage / "data.jsonl").read_text()
                   .splitlines()}
        assert str(out / "iter3" / "rollout") not in earlier
    # Iteration 3's records are not iteration 2's, and neither are the adapters trained on them.
    for stage in ("policy", "prm"):
        assert (out / "iter3" / stage / "data.jsonl").read_text() != (out / "iter2" / stage / "data.jsonl").read_text()
        new, old = _adapter_tensors(out / "iter3" / stage), _adapter_tensors(out / "iter2" / stage)
        assert new.keys() == old.keys()
        assert any(not torch.equal(new[key], old[key]) for key in new), stage


@pytest.mark.slow
def test_prm_prior_and_later_settings_reach_iteration_two(tmp_path):
    """Iteration 2 searches with PRM 1 as a value prior and the later-iteration sampling;
    iteration 1 (no PRM yet) with neither."""
    from meds3.config import load_config
    from meds3.rollout import RolloutConfig
    from meds3.train.data import iter_trees

    config = _config(tmp_path, eval_base=False, later_search={"rollout_temperature": 1.0})
    config.rollout.search.prm_prior_weight = 0.5
    config.rollout.search.rollout_temperature = 0.6
    config.prm.data.require_pos_and_neg = False
    out = tmp_path / "evolve"
    run(config, progress=False)
    m1, m2 = (json.loads((out / f"iter{k}" / "rollout" / "manifest.json").read_text()) for k in (1, 2))
    assert m1["inputs"]["prm"] is None and m2["inputs"]["prm"] == str(out / "iter1" / "prm")
    saved = [load_config(RolloutConfig, out / f"iter{k}" / "rollout" / "config.yaml") for k in (1, 2)]
    assert [(c.search.prm_prior_weight, c.search.rollout_temperature) for c in saved] == [(0.0, 0.6), (0.5, 1.0)]
    valued = lambda k: [n for t in iter_trees(out / f"iter{k}" / "rollout") for n in t.nodes  # noqa: E731
                        if n.rollout_value is not None]
    assert valued(1) and all(n.prm_value is None for n in valued(1))
    assert valued(2) and all(0.0 <= n.prm_value <= 1.0 for n in valued(2))


@pytest.mark.slow
def test_release_engine_frees_generation_memory_before_training_and_scoring(tmp_path, monkeypatch):
    """With release_engine the generation engine is closed before each trainer and before the
    PRM scores the evaluation's responses: no engine is open while they run."""
    import meds3.engines
    import meds3.eval.runner
    import meds3.train

    events, open_engines = [], []
    real_build, real_policy, real_prm = meds3.engines.build_engine, meds3.train.train_policy, meds3.train.train_prm
    real_scorer = meds3.eval.runner.load_scorer

    def build(*args, **kwargs):
        engine = real_build(*args, **kwargs)
        real_close = engine.close

        def close():
            open_engines.remove(engine)
            events.append("close")
            real_close()

        engine.close = close
        open_engines.append(engine)
        events.append("build")
        return engine

    def during(name, fn):
        def wrapped(*args, **kwargs):
            events.append(f"{name} with {len(open_engines)} engine(s) open")
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(meds3.engines, "build_engine", build)
    monkeypatch.setattr(meds3.train, "train_policy", during("policy", real_policy))
    monkeypatch.setattr(meds3.train, "train_prm", during("prm", real_prm))
    monkeypatch.setattr(meds3.eval.runner, "load_scorer", during("PRM scoring", real_scorer))
    config = _config(tmp_path, iterations=1, release_engine=True)
    config.prm.data.require_pos_and_neg = False
    run(config, progress=False)
    assert events == ["build", "close", "policy with 0 engine(s) open", "prm with 0 engine(s) open",
                      "build", "close", "PRM scoring with 0 engine(s) open",  # base policy evaluation
                      "build", "close", "PRM scoring with 0 engine(s) open"]  # policy 2
    assert not open_engines
    assert _config(tmp_path).releases_engine() is False  # transformers on a CPU machine: one shared engine
    assert _config(tmp_path, backend="vllm").releases_engine() is True
