"""Training data across iterations: every iteration's tree of a question contributes its paths
(deduplicated by step text, newest source first), failed trees never train, and PRM data keeps
only questions with both a correct and an incorrect path unless told otherwise."""

from __future__ import annotations

import json

from train_trees import make_tree, node, question

from meds3.data.prompts import ROOT_STEP
from meds3.mcts.node import Tree
from meds3.rollout.store import TreeStore
from meds3.train import PRMDataConfig, SFTDataConfig, iter_trees, prm_records, sft_records

PATH_3 = [ROOT_STEP, "BMI is weight divided by height squared.", "70 / 3.0625 = 22.9. The answer is B."]
PATH_5 = [ROOT_STEP, "Square the height: 1.75 * 1.75 = 3.06.", "Divide 70 by 3.06 to get 22.9.", "The answer is B."]
NEW = [ROOT_STEP, "Height squared is 3.0625 m^2.", "22.9 kg/m^2. The answer is B."]


def later_tree(qid: str = "q1") -> Tree:
    """A later iteration's tree of the same question: one new correct path, one that repeats
    PATH_3's texts (with other whitespace and values), one wrong path."""
    nodes = [
        node(0, None, 0, "root", ROOT_STEP, 0.8, visits=4),
        node(1, 0, 1, "reason", "Height squared is 3.0625 m^2.", 0.9, visits=2),
        node(2, 1, 2, "finish", "22.9 kg/m^2. The answer is B.", 1.0, True, "B"),
        node(3, 0, 1, "reason", "BMI is  weight divided by height squared.", 0.6, visits=2),
        node(4, 3, 2, "finish", "70 / 3.0625 = 22.9. The answer is B.", 1.0, True, "B"),
        node(5, 1, 2, "finish", "The answer is A.", 0.0, False, "A"),
    ]
    for n in nodes[1:]:
        nodes[n.parent].children.append(n.id)
    return Tree(question=question(qid), nodes=nodes, status="complete", stop_reason="correct_leaves")


def store(folder, trees):
    s = TreeStore(folder / "trees", flush_every=1)
    s.add_many(trees)
    s.close()
    return str(folder)


def test_every_iterations_paths_reach_training_newest_first(tmp_path):
    it1 = store(tmp_path / "iter1", [make_tree("q1")])
    it2 = store(tmp_path / "iter2", [later_tree("q1")])
    recs = sft_records(iter_trees([it2, it1]))
    # iter2's two correct paths, then iter1's PATH_5; iter1's PATH_3 repeats iter2's texts.
    assert [(r["steps"], r["source"]) for r in recs] == [(NEW, it2), (PATH_3[:1] + ["BMI is  weight divided by "
                                                                                   "height squared."] + PATH_3[2:],
                                                           it2), (PATH_5, it1)]
    assert recs[1]["values"] == [0.8, 0.6, 1.0]  # the newest tree's values for the repeated path
    # A cap keeps the newest paths.
    assert [r["source"] for r in sft_records(iter_trees([it2, it1]), SFTDataConfig(max_per_question=2))] == [it2, it2]
    prm = prm_records(iter_trees([it2, it1]))
    assert {r["source"] for r in prm} == {it1, it2}
    assert [r["verdict"] for r in prm] == [True, True, True, False, False, None]


def test_without_accumulation_only_the_given_source_trains(tmp_path):
    it1 = store(tmp_path / "iter1", [make_tree("q1")])
    assert {r["source"] for r in sft_records(iter_trees([it1]))} == {it1}


def test_a_duplicate_tree_in_one_source_is_skipped(tmp_path, caplog):
    shard = tmp_path / "trees.jsonl"  # the store refuses duplicates; a hand-made file may hold one
    shard.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in (make_tree("q1"), later_tree("q1"))))
    recs = sft_records(iter_trees([shard]))
    assert [r["steps"] for r in recs] == [PATH_3, PATH_5]  # the first tree only
    assert "duplicate tree" in caplog.text


def test_failed_trees_never_train(tmp_path):
    failed = make_tree("q2")
    failed.status, failed.error = "failed", "engine error"
    it1 = store(tmp_path / "iter1", [make_tree("q1"), failed])
    assert {r["question_id"] for r in sft_records(iter_trees([it1]))} == {"q1"}
    assert {r["question_id"] for r in prm_records(iter_trees([it1]))} == {"q1"}


def test_prm_keeps_questions_with_both_outcomes_by_default():
    only_pos = later_tree("q3")
    only_pos.nodes[1].children.remove(5)
    only_pos.nodes = only_pos.nodes[:5]
    trees = [make_tree("q1"), only_pos]
    assert {r["question_id"] for r in prm_records(trees)} == {"q1"}
    assert {r["question_id"] for r in prm_records(trees, PRMDataConfig(require_pos_and_neg=False))} == {"q1", "q3"}
    assert {r["question_id"] for r in sft_records(trees)} == {"q1", "q3"}  # the policy still learns from it
