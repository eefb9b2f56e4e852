"""TrainResult: the typed result of both trainers, its JSON round trip, and summaries written
before it (old summary.json files and evolve stage manifests) read back."""

from __future__ import annotations

import json

import pytest

from meds3.train import TrainResult


def _policy() -> TrainResult:
    return TrainResult(kind="policy", output_dir="runs/p/adapter", records=4,
                       metrics={"first_loss": 2.5, "last_loss": 1.25}, examples=4, questions=2, steps=6,
                       epochs=3.0, losses=[2.5, 2.0, 1.25], seconds=1.5, adapter_dir="runs/p/adapter",
                       loss_png="runs/p/loss.png", device="cpu", merged_dir="runs/p/merged")


def test_round_trip_through_json():
    for result in (_policy(), TrainResult.skip("prm", "no finished trajectories"),
                   TrainResult.skip("policy", "no correct trajectories", output_dir="iter1/policy/adapter")):
        back = TrainResult.from_dict(json.loads(json.dumps(result.to_dict())))
        assert back == result
    d = _policy().to_dict()
    assert list(d)[:5] == ["kind", "output_dir", "records", "metrics", "skipped"]
    d["metrics"]["first_loss"] = 9.0  # to_dict copies: the result is not changed through it
    assert _policy().metrics["first_loss"] == 2.5


def test_skip():
    policy = TrainResult.skip("policy", "no correct trajectories", output_dir="iter1/policy/adapter")
    assert (policy.output_dir, policy.adapter_dir, policy.skipped, policy.records) == (
        "iter1/policy/adapter", "iter1/policy/adapter", "no correct trajectories", 0)
    prm = TrainResult.skip("prm", "no finished trajectories")
    assert (prm.output_dir, prm.adapter_dir, prm.metrics) == (None, None, {})
    assert prm.summary()["skipped"] == "no finished trajectories"


def test_summary_layout_and_legacy_summaries():
    summary = _policy().summary()
    assert summary == {
        "kind": "policy", "records": 4, "examples": 4, "steps": 6, "epochs": 3.0, "first_loss": 2.5,
        "last_loss": 1.25, "losses": [2.5, 2.0, 1.25], "seconds": 1.5, "adapter_dir": "runs/p/adapter",
        "loss_png": "runs/p/loss.png", "questions": 2, "device": "cpu", "merged_dir": "runs/p/merged"}
    assert TrainResult.from_dict(summary) == _policy()  # a summary.json reads back whole
    old_prm = {"kind": "prm", "records": 8, "examples": 8, "steps": 6, "epochs": 6.0, "first_loss": 0.7,
               "last_loss": None, "losses": [0.7], "seconds": 2.0, "adapter_dir": "runs/r/adapter",
               "loss_png": "runs/r/loss.png", "correct_records": 4, "questions": 2, "loss_type": "bce",
               "device": "cpu"}
    prm = TrainResult.from_dict(old_prm)
    assert (prm.output_dir, prm.metrics, prm.correct_records) == ("runs/r", {"first_loss": 0.7}, 4)
    # what the evolve loop stored for a training stage with nothing to learn from
    skipped = TrainResult.from_dict({"skipped": "no correct trajectories", "adapter_dir": None}, kind="policy")
    assert skipped == TrainResult.skip("policy", "no correct trajectories")


def test_from_dict_errors():
    with pytest.raises(ValueError, match="unknown key.*'prm_dir'"):
        TrainResult.from_dict({"kind": "prm", "output_dir": "x", "prm_dir": "x"})
    with pytest.raises(ValueError, match="kind must be 'policy' or 'prm', got None"):
        TrainResult.from_dict({"skipped": "nothing"})
    with pytest.raises(ValueError, match="JSON object, got list"):
        TrainResult.from_dict([])
