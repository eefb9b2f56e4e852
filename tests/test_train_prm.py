"""The PRM on tiny-random-llama: loss function values, training lowers the loss, the saved
adapter scores identically, and one pass over a trajectory equals scoring each prefix."""

from __future__ import annotations

import json
import math

import pytest
from model_paths import model_path
from train_trees import question, write_trees

from meds3.data.prompts import ROOT_STEP
from meds3.train import IGNORE_INDEX, PRMScorer, PRMTrainConfig, fit_prm, prm_loss
from meds3.train.prm import collate_prm

TRAJS = [
    [ROOT_STEP, "BMI is weight divided by height squared.", "Height squared: 1.75 * 1.75 = 3.0625 m²",
     "70 / 3.0625 ≈ 22.9", "The answer is B."],
    [ROOT_STEP, "The answer is D."],
    [ROOT_STEP, "Weight 70 kg.", "Height 1.75 m.", "Square it: 3.06.", "Divide: 22.9.", "Round: 22.9.",
     "Compare with the options.", "The answer is B."],
]


def test_prm_loss_values():
    import torch

    logits = torch.tensor([[0.0, 2.0, 5.0], [-1.0, 0.0, 0.0]])
    labels = torch.tensor([[0.5, 1.0, IGNORE_INDEX], [0.25, IGNORE_INDEX, IGNORE_INDEX]])
    bce = (math.log(2) + math.log1p(math.exp(-2)) + (math.log1p(math.exp(-1)) + 0.25)) / 3  # softplus(x) - x*y
    assert prm_loss(logits, labels).item() == pytest.approx(bce, abs=1e-6)
    # hard: 0.5 -> 1, 1.0 -> 1, 0.25 -> 0
    hard = (math.log1p(1) + math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 3
    assert prm_loss(logits, labels, "hard").item() == pytest.approx(hard, abs=1e-6)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    mse = ((sig(0) - 0.5) ** 2 + (sig(2) - 1) ** 2 + (sig(-1) - 0.25) ** 2) / 3
    assert prm_loss(logits.unsqueeze(-1), labels, "mse").item() == pytest.approx(mse, abs=1e-6)
    # gradient accumulation: normalised by the labelled positions of the whole batch
    assert prm_loss(logits, labels, num_items_in_batch=6).item() == pytest.approx(bce / 2, abs=1e-6)
    with pytest.raises(ValueError, match="unknown PRM loss"):
        prm_loss(logits, labels, "softmax")


def test_collate_pads_right():
    batch = collate_prm([{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 0.5, 1.0]},
                         {"input_ids": [8], "labels": [0.25]}], pad_token_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 0.5, 1.0], [0.25, IGNORE_INDEX, IGNORE_INDEX]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_path()
    root = tmp_path_factory.mktemp("prm")
    write_trees(root / "rollout", n_questions=2)
    config = PRMTrainConfig(trees=[str(root / "rollout")], base_model="tiny-random-llama",
                            output_dir=str(root / "out"), r=8, alpha=16, dropout=0.0, learning_rate=3e-3,
                            max_steps=6, batch_size=8)  # the whole set per step: a steady descent
    return config, fit_prm(config, progress=False)


@pytest.fixture(scope="module")
def scorer(trained):
    return PRMScorer(trained[0].output_dir, batch_size=2)


def _scores_in_memory(result, trajs):
    """Scores from the trained model still in memory, one trajectory at a time."""
    import torch

    from meds3.train.labels import tokenize_trajectory
    from meds3.train.scorer import step_probability

    out = []
    for steps in trajs:
        tt = tokenize_trajectory(result.tokenizer, question(), steps)
        with torch.no_grad():
            logits = result.model(input_ids=torch.tensor([tt.input_ids])).logits[0, :, 0]
        out.append(step_probability(logits)[tt.step_ends].tolist())
    return out


def test_summary_and_outputs(trained):
    config, result = trained
    s = json.loads(open(f"{config.output_dir}/summary.json").read())
    assert (s["records"], s["correct_records"], s["examples"], s["steps"], s["loss_type"]) == (8, 4, 8, 6, "bce")
    assert s["adapter_dir"] == f"{config.output_dir}/adapter" and len(s["losses"]) == 6
    assert list(s) == ["kind", "records", "examples", "steps", "epochs", "first_loss", "last_loss", "losses",
                       "seconds", "adapter_dir", "loss_png", "correct_records", "questions", "loss_type", "device"]
    got = result.result
    assert s == got.summary() and got.output_dir == config.output_dir  # PRMScorer(output_dir) loads it
    assert (got.kind, got.records, got.correct_records, got.skipped) == ("prm", 8, 4, None)
    assert got.metrics == {"first_loss": s["first_loss"], "last_loss": s["last_loss"]}
    meta = json.loads(open(f"{config.output_dir}/adapter/meds3_train.json").read())
    assert (meta["kind"], meta["base_model"], meta["probability"]) == ("prm", "tiny-random-llama", "sigmoid")


def test_training_lowers_the_loss(trained):
    import torch

    _, result = trained
    batch = collate_prm([result.dataset[i] for i in range(8)], result.tokenizer.pad_token_id)
    labels = batch.pop("labels")
    with torch.no_grad():
        after = prm_loss(result.model(**batch).logits, labels).item()
        with result.model.disable_adapter():  # LoRA off and the score head as initialised
            before = prm_loss(result.model(**batch).logits, labels).item()
    assert after < before - 0.02, (before, after)  # 0.700 -> 0.667 when pinned down on this CPU


def test_saved_adapter_scores_identically(trained, scorer):
    config, result = trained
    want = _scores_in_memory(result, TRAJS)
    got = scorer.score(question(), TRAJS)
    assert [len(s) for s in got] == [5, 2, 8]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-6)
    from_adapter = PRMScorer(f"{config.output_dir}/adapter", batch_size=8).score(question(), TRAJS)
    for g, w in zip(from_adapter, want):
        assert g == pytest.approx(w, abs=1e-6)


def test_one_pass_equals_scoring_each_prefix(scorer):
    fast = scorer.score(question(), TRAJS)
    slow = scorer.score_by_prefixes(question(), TRAJS)
    for f, s in zip(fast, slow):
        assert f == pytest.approx(s, abs=1e-5)
    assert len({round(x, 4) for x in fast[2]}) > 1  # the steps really get different scores


def test_score_batch_across_questions(scorer):
    q2 = question("other")
    both = scorer.score_batch([(question(), TRAJS[:2]), (q2, TRAJS[2:])])
    assert [[len(s) for s in per_q] for per_q in both] == [[5, 2], [8]]
    alone = scorer.score(q2, TRAJS[2:])
    assert both[1][0] == pytest.approx(alone[0], abs=1e-6)


def test_scorer_errors(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="no PRM adapter"):
        PRMScorer(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        PRMScorer(trained[0].output_dir, batch_size=0)
