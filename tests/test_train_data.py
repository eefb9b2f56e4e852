"""SFT and PRM records from hand-written trees; JSONL; tokenized datasets."""

from __future__ import annotations

import json

import pytest
from model_paths import model_path
from train_trees import make_tree, write_trees

from meds3.config import ConfigError, load_config
from meds3.data.errors import DataError
from meds3.data.prompts import ROOT_STEP
from meds3.train import (
    IGNORE_INDEX,
    PolicyTrainConfig,
    PRMDataConfig,
    PRMTrainConfig,
    SFTDataConfig,
    iter_trees,
    prm_dataset,
    prm_records,
    read_jsonl,
    sft_dataset,
    sft_records,
    write_jsonl,
)
from meds3.train.common import load_tokenizer

PATH_3 = [ROOT_STEP, "BMI is weight divided by height squared.", "70 / 3.0625 = 22.9. The answer is B."]
PATH_5 = [ROOT_STEP, "Square the height: 1.75 * 1.75 = 3.06.", "Divide 70 by 3.06 to get 22.9.", "The answer is B."]


def test_sft_records_default_dedupes_correct_paths():
    recs = sft_records([make_tree()])
    assert [r["steps"] for r in recs] == [PATH_3, PATH_5]
    assert [r["values"] for r in recs] == [[0.6, 0.75, 1.0], [0.6, 0.5, 1.0, 1.0]]
    assert {r["verdict"] for r in recs} == {True} and {r["answer"] for r in recs} == {"B"}
    assert recs[0]["question"]["id"] == "q1" and recs[0]["question_id"] == "q1"


def test_sft_selection_options():
    tree = make_tree()
    assert len(sft_records([tree], SFTDataConfig(dedupe=False))) == 3  # leaf 8 repeats leaf 3's texts
    top = sft_records([tree], SFTDataConfig(top_k=1))
    assert [r["steps"] for r in top] == [PATH_3]  # min step value 0.75 beats 0.5
    top_all = sft_records([tree], SFTDataConfig(top_k=2, dedupe=False))
    assert [r["values"][1] for r in top_all] == [0.75, 0.7]
    capped = sft_records([make_tree("a"), make_tree("b")], SFTDataConfig(max_per_question=1))
    assert [(r["question_id"], r["steps"]) for r in capped] == [("a", PATH_3), ("b", PATH_3)]
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        SFTDataConfig(top_k=0)


def test_prm_records_pos_and_neg():
    recs = prm_records([make_tree()])
    assert [(r["verdict"], r["values"]) for r in recs] == [
        (True, [0.6, 0.75, 1.0]), (True, [0.6, 0.5, 1.0, 1.0]), (False, [0.6, 0.75, 0.0]), (None, [0.6, 0.5, 0.0])]
    assert len(prm_records([make_tree()], PRMDataConfig(include_neg=False))) == 2
    assert len(prm_records([make_tree()], PRMDataConfig(max_pos_per_question=1, max_neg_per_question=1))) == 2
    assert len(prm_records([make_tree()], PRMDataConfig(dedupe=False))) == 5


def test_trees_from_folders_and_jsonl_roundtrip(tmp_path):
    write_trees(tmp_path / "run", n_questions=3)
    ids = [t.question.id for t in iter_trees(tmp_path / "run")]
    assert ids == ["q1", "q2", "q3"]
    assert len(list(iter_trees([tmp_path / "run" / "trees"]))) == 3
    recs = prm_records(iter_trees(str(tmp_path / "run")))
    path = write_jsonl(recs, tmp_path / "out" / "data.jsonl")
    assert read_jsonl(path) == json.loads(json.dumps(recs)) and len(recs) == 12


def test_bad_tree_inputs_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.*does not exist"):
        list(iter_trees(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no tree shards"):
        list(iter_trees(tmp_path / "empty"))
    shard = tmp_path / "trees-bad.jsonl"
    shard.write_text(json.dumps(make_tree().to_dict()) + "\n" + json.dumps({"schema_version": 9}) + "\n")
    with pytest.raises(DataError, match=r"trees-bad.jsonl:line 2: not a tree"):
        list(iter_trees(shard))
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"question": {}}\n')
    with pytest.raises(DataError, match="data.jsonl:line 1: field 'steps' missing"):
        read_jsonl(bad)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(model_path("tiny-random-llama"))


def test_sft_dataset_masks_the_prompt(tok):
    ds = sft_dataset(sft_records([make_tree()]), tok)
    assert ds.column_names == ["question_id", "input_ids", "attention_mask", "labels"]
    row = ds[0]
    start = row["labels"].index(next(v for v in row["labels"] if v != IGNORE_INDEX))
    assert tok.decode(row["input_ids"][start:]) == (
        "Step 0: Let's break down this problem step by step.\n\nStep 1: BMI is weight divided by height "
        "squared.\n\nStep 2: 70 / 3.0625 = 22.9. The answer is B.<|im_end|>\n")
    assert row["labels"][start:] == row["input_ids"][start:]
    assert sum(v != IGNORE_INDEX for v in row["labels"]) == len(row["input_ids"]) - start


def test_prm_dataset_labels_and_truncation(tok):
    recs = prm_records([make_tree()])
    ds = prm_dataset(recs, tok)
    labelled = [[v for v in row["labels"] if v != IGNORE_INDEX] for row in ds]
    assert labelled == [[0.75, 1.0], [0.5, 1.0, 1.0], [0.75, 0.0], [0.5, 0.0]]
    full = len(ds[1]["input_ids"])
    cut = prm_dataset(recs, tok, max_length=full - 3)
    assert [v for v in cut[1]["labels"] if v != IGNORE_INDEX] == [0.5, 1.0]  # the last step lost its label
    with pytest.raises(DataError, match="no PRM examples"):
        prm_dataset(recs, tok, max_length=20)


def test_train_configs_load_with_overrides(tmp_path):
    cfg = load_config(PRMTrainConfig, None, ["trees=[runs/a, runs/b]", "loss=mse", "data.include_neg=false"])
    assert (cfg.r, cfg.alpha, cfg.loss, cfg.data.include_neg) == (64, 128, "mse", False)
    assert cfg.trees == ["runs/a", "runs/b"]
    pol = load_config(PolicyTrainConfig, None, ["trees=[runs/a]", "data.top_k=2", "learning_rate=1e-4"])
    assert (pol.r, pol.alpha, pol.trees, pol.data.top_k, pol.learning_rate) == (16, 32, ["runs/a"], 2, 1e-4)
    with pytest.raises(ConfigError, match="loss"):
        load_config(PRMTrainConfig, None, ["loss=softmax"])
    with pytest.raises(ConfigError, match="unknown key 'data.topk'"):
        load_config(PolicyTrainConfig, None, ["data.topk=2"])
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_config(PolicyTrainConfig, None, ["batch_size=0"])


def test_example_configs_load():
    from conftest import REPO

    pol = load_config(PolicyTrainConfig, REPO / "examples/configs/train_policy.yaml")
    prm = load_config(PRMTrainConfig, REPO / "examples/configs/train_prm.yaml")
    assert (pol.r, pol.alpha, pol.output_dir) == (16, 32, "runs/real/policy")
    assert (prm.r, prm.alpha, prm.loss, prm.output_dir) == (64, 128, "bce", "runs/real/prm")
