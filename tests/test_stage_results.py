"""Typed stage results: round trips, summaries written before them, and an evolution run
resumed from manifests the previous version wrote (no model: every stage is stubbed)."""

from __future__ import annotations

import json

import pytest

from meds3.data.loaders import save_questions
from meds3.data.question import MedQuestion
from meds3.evolve.stages import run_stage
from meds3.results import EvalResult, RolloutResult
from meds3.train.common import TrainResult

# A rollout summary.json as every version before RolloutResult wrote it (no output_dir).
LEGACY_ROLLOUT = {
    "trees": 3, "complete": 2, "failed": 1, "with_correct_leaf": 2, "nodes_per_tree": 7.33, "tokens_per_tree": 410.0,
    "correct_leaf_rate_by_task_type": {"multiple_choice": 0.6667}, "correct_leaf_rate_by_domain": {"-": 0.6667},
    "stop_reasons": {"complete": 2, "engine": 1}, "tree_attempts": {"retried": 1, "given_up": []},
}
ROW = {"dataset": "held_out", "budget": None, "selector": "majority", "n": 4, "questions": 2, "accuracy": 0.5,
       "ci_low": 0.0, "ci_high": 1.0, "correct": 1, "answered": 1.0, "tokens_per_question": 120.0}


def test_rollout_result_round_trip_and_legacy_summary():
    legacy = RolloutResult.from_dict(LEGACY_ROLLOUT, output_dir="runs/x/iter1/rollout")
    assert (legacy.output_dir, legacy.trees, legacy.complete, legacy.failed, legacy.with_correct_leaf) == (
        "runs/x/iter1/rollout", 3, 2, 1, 2)
    assert legacy.details["stop_reasons"] == {"complete": 2, "engine": 1}
    assert legacy.to_dict() == {**LEGACY_ROLLOUT, "output_dir": "runs/x/iter1/rollout"}
    assert RolloutResult.from_dict(legacy.to_dict()) == legacy
    assert RolloutResult.from_dict(json.loads(json.dumps(legacy.to_dict()))) == legacy
    # read like the summary dict it replaces
    assert legacy["trees"] == 3 and "tree_attempts" in legacy and legacy.get("ray") is None


@pytest.mark.parametrize("bad, message", [
    ({"trees": -1}, "'trees' must be a count"),
    ({"trees": "3"}, "'trees' must be a count"),
    ({"trees": 3}, "no 'output_dir'"),
    ([1, 2], "expected a JSON object"),
])
def test_rollout_result_refuses_bad_summaries(bad, message):
    with pytest.raises(ValueError, match=message):
        RolloutResult.from_dict(bad)


def test_eval_result_round_trip():
    result = EvalResult("runs/e", [ROW], [{**ROW, "n": 2}], {"workers": 2})
    assert result.to_dict() == {"results": [ROW], "accuracy_vs_n": [{**ROW, "n": 2}], "output_dir": "runs/e",
                                "ray": {"workers": 2}}
    assert EvalResult.from_dict(result.to_dict()) == result
    assert result.accuracy("held_out", "majority") == 0.5 and result.accuracy("held_out", "p-vs") is None
    local = EvalResult("runs/e", [ROW])
    assert "ray" not in local.to_dict() and EvalResult.from_dict(local.to_dict()) == local
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'rows'"):
        EvalResult.from_dict({"rows": [], "output_dir": "x"})


def test_run_stage_types_fresh_and_resumed_results(tmp_path):
    folder = str(tmp_path / "r")

    def read(d):
        return RolloutResult.from_dict(d, output_dir=folder)

    first = run_stage("iter1/rollout", folder, lambda: RolloutResult(folder, trees=2, complete=2), read=read)
    second = run_stage("iter1/rollout", folder, lambda: pytest.fail("finished: not run again"), read=read)
    assert (first.skipped, second.skipped) == (False, True)
    assert second.result == first.result == RolloutResult(folder, trees=2, complete=2)
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["summary"] == first.result.to_dict()
    # a stage that returns its summary dict is typed as a resumed one is
    typed = run_stage("iter1/x", tmp_path / "x", lambda: {"trees": 1}, read=read)
    assert typed.result == RolloutResult(folder, trees=1) and typed.summary["trees"] == 1


def test_damaged_summary_in_a_manifest_is_a_data_error(tmp_path):
    from meds3.data.errors import DataError
    from meds3.evolve.stages import write_manifest

    write_manifest(tmp_path, {"status": "done", "summary": {"trees": "many"}})
    with pytest.raises(DataError, match=r"manifest.json: summary: rollout result: 'trees' must be a count"):
        run_stage("iter1/rollout", tmp_path, dict, read=lambda d: RolloutResult.from_dict(d, output_dir="x"))


# -- an evolution run resumed from the previous version's manifests ---------------------------------

def _question(i: int) -> MedQuestion:
    return MedQuestion(id=f"q{i}", question=f"Which option is right in case {i}?", task_type="multiple_choice",
                       options={"A": "first", "B": "second"}, answer="B")


def _config(tmp_path):
    from meds3.config import from_dict
    from meds3.evolve import EvolveConfig

    save_questions(tmp_path / "seeds.jsonl", [_question(i) for i in range(4)])
    return from_dict(EvolveConfig, {
        "output_dir": str(tmp_path / "evolve"), "iterations": 1, "base_model": "tiny-random-llama",
        "seeds": [str(tmp_path / "seeds.jsonl")], "questions_per_iteration": 2, "held_out": 1,
        "release_engine": False, "eval_base": False, "contamination": {"check": False}})


def _stub_stages(monkeypatch, calls):
    import meds3.engines
    import meds3.eval
    import meds3.rollout
    import meds3.train

    class Engine:
        def close(self):
            pass

    def rollout(cfg, engine=None, progress=True, force=False):
        calls.append(("rollout", cfg.adapter))
        return RolloutResult(cfg.output_dir, trees=2, complete=2, with_correct_leaf=1)

    def policy(cfg, progress=True):
        calls.append(("policy", None))
        return TrainResult("policy", f"{cfg.output_dir}/adapter", records=3, adapter_dir=f"{cfg.output_dir}/adapter",
                           metrics={"first_loss": 2.0, "last_loss": 1.0})

    def prm(cfg, progress=True):
        calls.append(("prm", None))
        return TrainResult("prm", cfg.output_dir, records=4, adapter_dir=f"{cfg.output_dir}/adapter")

    def run_eval(cfg, engine=None, progress=True, force=False):
        calls.append(("eval", (cfg.adapter, cfg.prm)))
        return EvalResult(cfg.output_dir, [ROW])

    monkeypatch.setattr(meds3.engines, "build_engine", lambda *a, **k: Engine())
    monkeypatch.setattr(meds3.rollout, "run_rollout", rollout)
    monkeypatch.setattr(meds3.train, "train_policy", policy)
    monkeypatch.setattr(meds3.train, "train_prm", prm)
    monkeypatch.setattr(meds3.eval, "run_eval", run_eval)


def _legacy(manifest_path, summary):
    """Rewrite a manifest's summary as the version before typed results wrote it (settings kept)."""
    manifest = json.loads(manifest_path.read_text())
    manifest["summary"] = summary
    manifest_path.write_text(json.dumps(manifest))


def test_evolve_resumes_from_manifests_of_the_previous_version(tmp_path, monkeypatch):
    from meds3.evolve import run

    calls = []
    _stub_stages(monkeypatch, calls)
    config = _config(tmp_path)
    run(config, progress=False)
    it = tmp_path / "evolve" / "iter1"
    adapter = str(it / "policy" / "adapter")
    assert calls == [("rollout", None), ("policy", None), ("prm", None), ("eval", (adapter, str(it / "prm")))]
    # The summaries as the previous version wrote them: no output_dir anywhere, the trainers'
    # summary.json layout (flat losses, adapter_dir), a skipped PRM as {"skipped", "adapter_dir"}.
    _legacy(it / "rollout" / "manifest.json", LEGACY_ROLLOUT)
    _legacy(it / "policy" / "manifest.json", {
        "kind": "policy", "records": 3, "examples": 3, "steps": 2, "epochs": 1.0, "first_loss": 2.0,
        "last_loss": 1.0, "losses": [2.0, 1.0], "seconds": 1.5, "adapter_dir": adapter,
        "loss_png": str(it / "policy" / "loss.png"), "questions": 2, "device": "cpu"})
    _legacy(it / "prm" / "manifest.json", {"skipped": "no finished trajectory", "adapter_dir": None})
    (it / "eval" / "manifest.json").unlink()  # evaluated again: it reads the policy and PRM stages' results
    calls.clear()
    report = run(config, progress=False)
    assert calls == [("eval", (adapter, None))]  # the legacy PRM was skipped: no PRM
    assert [s["skipped"] for s in report["stages"]] == [True, True, True, False]
    assert report["search"] == [{"iteration": "iter1", "trees": 3, "failed": 1, "with_correct_leaf": 2,
                                 "correct_leaf_rate": 0.6667, "sft_records": 3, "prm_records": 0}]


def test_evolve_reports_its_own_metrics_to_tensorboard_and_a_resume_keeps_them(tmp_path, monkeypatch):
    """``report_to: tensorboard``: one step per iteration with the search, accuracy and training
    metrics (exact values of the stubbed stages); changing report_to does not redo finished stages."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from meds3.evolve import run

    calls = []
    _stub_stages(monkeypatch, calls)
    config = _config(tmp_path)
    config.report_to = "tensorboard"
    run(config, progress=False)
    events = EventAccumulator(str(tmp_path / "evolve" / "tracking"))
    events.Reload()
    scalars = {tag: [(e.step, round(e.value, 4)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["search/trees"] == [(1, 2.0)]
    assert scalars["search/correct_leaf_rate"] == [(1, 0.5)]
    assert scalars["train/policy_records"] == [(1, 3.0)] and scalars["train/policy_last_loss"] == [(1, 1.0)]
    assert scalars["train/prm_records"] == [(1, 4.0)]
    accuracy = [tag for tag in scalars if tag.startswith("accuracy/")]
    assert accuracy and all(scalars[tag] == [(1, round(ROW["accuracy"], 4))] for tag in accuracy)
    calls.clear()
    config.report_to = "none"
    run(config, progress=False)
    assert calls == []  # every stage finished: none redone for a change of where metrics go
