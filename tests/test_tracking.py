"""Experiment tracking: the trainers' ``report_to`` writes tensorboard events holding the
training loss, and the loop's Tracker writes its metrics, read back exactly."""

from __future__ import annotations

import json

import pytest
from model_paths import model_path
from train_trees import write_trees

from meds3.config import ConfigError, load_config
from meds3.tracking import Tracker, iteration_metrics, report_targets
from meds3.train import PolicyTrainConfig, PRMTrainConfig, train_policy

pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'meds3[tracking]')")


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``log_dir``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_policy_training_reports_its_loss_to_tensorboard(tmp_path):
    model_path()
    write_trees(tmp_path / "rollout", n_questions=1)
    config = PolicyTrainConfig(trees=[str(tmp_path / "rollout")], base_model="tiny-random-llama",
                               output_dir=str(tmp_path / "out"), r=4, alpha=8, max_steps=3, batch_size=2,
                               report_to="tensorboard", logging_dir=str(tmp_path / "tb"))
    result = train_policy(config, progress=False)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    scalars = read_scalars(tmp_path / "tb")
    steps, losses = zip(*scalars["train/loss"])
    assert steps == (1, 2, 3) and len(result.losses) == 3
    assert losses == pytest.approx(result.losses, abs=1e-5)  # the same losses as summary.json (float32 there)
    assert [s for s, _ in scalars["train/learning_rate"]] == [1, 2, 3]
    assert not (tmp_path / "out" / "trainer" / "runs").exists()  # logging_dir took the events
    again = load_config(PolicyTrainConfig, tmp_path / "out" / "config.yaml")
    assert (again.report_to, again.logging_dir) == ("tensorboard", str(tmp_path / "tb"))


def test_training_reports_nowhere_by_default(tmp_path):
    from meds3.train.common import training_arguments

    config = PRMTrainConfig(output_dir=str(tmp_path / "prm"), device="cpu")
    assert training_arguments(config, tmp_path / "t", False).report_to == []
    both = PRMTrainConfig(output_dir=str(tmp_path / "prm"), device="cpu", report_to=["tensorboard", "wandb"])
    assert training_arguments(both, tmp_path / "t", False).report_to == ["tensorboard", "wandb"]


def test_report_to_values_and_errors(tmp_path):
    assert report_targets("none") == report_targets(None) == report_targets([]) == []
    assert report_targets("tensorboard, wandb") == ["tensorboard", "wandb"]
    assert report_targets(["wandb", "wandb"]) == ["wandb"]
    with pytest.raises(ValueError, match="unknown integration 'tensorbord'"):
        PolicyTrainConfig(report_to="tensorbord")
    with pytest.raises(ValueError, match="'none' cannot go with other names"):
        report_targets(["none", "wandb"])
    with pytest.raises(ValueError, match="training_args: set report_to as the config key"):
        PolicyTrainConfig(training_args={"report_to": "wandb"})
    with pytest.raises(ValueError, match="logging_dir must name a folder"):
        PolicyTrainConfig(logging_dir=" ")
    with pytest.raises(ConfigError, match="report_to: unknown integration 'tb'"):
        load_config(PolicyTrainConfig, None, ["report_to=tb"])
    listed = load_config(PolicyTrainConfig, None, ["report_to=[tensorboard, wandb]"]).report_to
    assert report_targets(listed) == ["tensorboard", "wandb"]  # the override stays text; the list is read from it


def test_tracker_writes_the_loop_metrics_exactly(tmp_path):
    with Tracker("tensorboard", tmp_path / "loop") as tracker:
        tracker.log({"search/correct_leaf_rate": 0.75, "accuracy/medqa/p_vs": 0.5, "skip": float("nan")}, step=1)
        tracker.log({"search/correct_leaf_rate": 0.875, "search/generated_tokens": 1536}, step=2)
    scalars = read_scalars(tmp_path / "loop")
    assert scalars == {"search/correct_leaf_rate": [(1, 0.75), (2, 0.875)], "accuracy/medqa/p_vs": [(1, 0.5)],
                       "search/generated_tokens": [(2, 1536.0)]}


def test_tracker_none_writes_nothing(tmp_path):
    tracker = Tracker("none", tmp_path / "nothing")
    tracker.log({"a": 1.0}, step=1)
    tracker.close()
    tracker.close()  # a second close does nothing
    assert tracker.targets == [] and not (tmp_path / "nothing").exists()


def test_tracker_wandb_needs_wandb(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    with pytest.raises(ImportError, match="pip install wandb"):
        Tracker(["tensorboard", "wandb"], tmp_path / "w")


def test_iteration_metrics():
    rollout = {"trees": 8, "complete": 7, "failed": 1, "with_correct_leaf": 6, "tokens_per_tree": 250.5}
    rows = [{"policy": "iter1", "dataset": "runs/evolve/held_out.jsonl", "selector": "majority", "accuracy": 0.625,
             "tokens_per_question": 1200.0},
            {"policy": "iter1", "dataset": "medqa", "selector": "p_vs@64", "accuracy": None,
             "tokens_per_question": 300.0}]
    train = {"policy": {"kind": "policy", "output_dir": "a", "records": 12, "metrics": {"last_loss": 1.5}},
             "prm": {"skipped": "no finished trajectories", "adapter_dir": None}}
    assert iteration_metrics(rollout, rows, train) == {
        "search/trees": 8.0, "search/failed": 1.0, "search/tokens_per_tree": 250.5,
        "search/correct_leaf_rate": 0.75, "search/generated_tokens": 2004.0,
        "accuracy/held_out/majority": 0.625, "tokens_per_question/held_out/majority": 1200.0,
        "tokens_per_question/medqa/p_vs@64": 300.0,
        "train/policy_records": 12.0, "train/policy_last_loss": 1.5}
    # a stage summary written before TrainResult has its losses flat
    assert iteration_metrics(train={"prm": {"records": 3, "last_loss": 0.25}}) == {
        "train/prm_records": 3.0, "train/prm_last_loss": 0.25}
    assert iteration_metrics({"trees": 0, "with_correct_leaf": 0}) == {"search/trees": 0.0}
    json.dumps(iteration_metrics(rollout, rows, train))  # plain numbers
