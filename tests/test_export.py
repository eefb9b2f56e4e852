"""``meds3 export``: SFT chat messages, TRL stepwise PRM records and DPO pairs from hand-written
trees, each written by the command and read back with ``datasets.load_dataset("json")``."""

from __future__ import annotations

import pytest
from train_trees import make_tree, node, question, write_trees

from meds3.cli import main
from meds3.data.prompts import DEFAULT_INSTRUCTION, DEFAULT_SYSTEM, ROOT_STEP
from meds3.export import (
    DEFAULT_THRESHOLD,
    dpo_export,
    hard_labels,
    preference_pairs,
    prm_export,
    sft_export,
    shared_steps,
)
from meds3.mcts.node import Tree
from meds3.train.data import prm_records, sft_records

USER = ("A 30-year-old woman weighs 70 kg and is 1.75 m tall. What is her BMI?\n\n"
        "A. 18.5\nB. 22.9\nC. 25.0\nD. 30.1\n\n" + DEFAULT_INSTRUCTION)
CHAT = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": USER}]
RESPONSE_3 = (f"Step 0: {ROOT_STEP}\n\nStep 1: BMI is weight divided by height squared.\n\n"
              "Step 2: 70 / 3.0625 = 22.9. The answer is B.")
RESPONSE_5 = (f"Step 0: {ROOT_STEP}\n\nStep 1: Square the height: 1.75 * 1.75 = 3.06.\n\n"
              "Step 2: Divide 70 by 3.06 to get 22.9.\n\nStep 3: The answer is B.")
RESPONSE_4 = (f"Step 0: {ROOT_STEP}\n\nStep 1: BMI is weight divided by height squared.\n\n"
              "Step 2: 70 / 1.75 = 40. The answer is D.")
PRM_PROMPT = f"System: {DEFAULT_SYSTEM}\n\nUser: {USER}\n\nAssistant: Step 0: {ROOT_STEP}\n\n"


def export(tmp_path, fmt: str, *options: str, questions: int = 1):
    """Run ``meds3 export`` on a rollout-like folder of ``questions`` trees; the records as
    ``datasets`` reads them back."""
    from datasets import load_dataset

    if not (tmp_path / "run").exists():
        write_trees(tmp_path / "run", n_questions=questions)
    out = tmp_path / f"{fmt}.jsonl"
    assert main(["export", "--trees", str(tmp_path / "run"), "--format", fmt, "--out", str(out),
                 "--no-progress", *options]) == 0
    return load_dataset("json", data_files=str(out), split="train").to_list()


def test_sft_export_is_the_policy_trainers_paths_as_chat_messages(tmp_path, capsys):
    rows = export(tmp_path, "sft")
    assert rows == [
        {"messages": CHAT + [{"role": "assistant", "content": RESPONSE_3}], "question_id": "q1"},
        {"messages": CHAT + [{"role": "assistant", "content": RESPONSE_5}], "question_id": "q1"},
    ]  # leaf 8 repeats leaf 3's steps (deduped); 4 is wrong, 6 unverifiable, 9 never visited
    assert capsys.readouterr().out.strip().startswith("exported 2 sft records (1 questions, 1 trees read) to ")
    assert len(rows) == len(sft_records([make_tree()]))


def test_sft_export_options_select_like_the_trainer(tmp_path):
    assert [r["messages"][-1]["content"] for r in export(tmp_path, "sft", "--top-k", "1")] == [RESPONSE_3]
    rows = export(tmp_path, "sft", "--no-dedupe", "--max-per-question", "3")
    assert [r["messages"][-1]["content"] for r in rows] == [RESPONSE_3, RESPONSE_5, RESPONSE_3]


def test_prm_export_is_trl_stepwise_supervision(tmp_path):
    rows = export(tmp_path, "prm", questions=2)
    first = [
        {"prompt": PRM_PROMPT, "completions": ["Step 1: BMI is weight divided by height squared.",
                                               "Step 2: 70 / 3.0625 = 22.9. The answer is B."],
         "labels": [True, True], "question_id": "q1"},
        {"prompt": PRM_PROMPT, "completions": ["Step 1: Square the height: 1.75 * 1.75 = 3.06.",
                                               "Step 2: Divide 70 by 3.06 to get 22.9.", "Step 3: The answer is B."],
         "labels": [True, True, True], "question_id": "q1"},  # step 1's value is 0.5: >= the threshold
        {"prompt": PRM_PROMPT, "completions": ["Step 1: BMI is weight divided by height squared.",
                                               "Step 2: 70 / 1.75 = 40. The answer is D."],
         "labels": [True, False], "question_id": "q1"},
        {"prompt": PRM_PROMPT, "completions": ["Step 1: Square the height: 1.75 * 1.75 = 3.06.",
                                               "Step 2: The answer is C."],
         "labels": [True, False], "question_id": "q1"},  # the unverifiable leaf counts as incorrect, as for the PRM
    ]
    assert rows == first + [dict(r, question_id="q2") for r in first]
    assert len(rows) == len(prm_records([make_tree("q1"), make_tree("q2")]))


def test_prm_export_threshold_moves_exact_labels(tmp_path):
    rows = export(tmp_path, "prm", "--threshold", "0.6", "--max-neg-per-question", "1")
    assert [r["labels"] for r in rows] == [[True, True], [False, True, True], [True, False]]


def test_hard_labels_are_the_prm_hard_loss_rule():
    import torch
    import torch.nn.functional as F

    from meds3.train.prm import PRMTrainConfig, prm_loss

    assert DEFAULT_THRESHOLD == PRMTrainConfig().threshold
    values = [0.0, 0.49, 0.5, 0.75, 1.0]
    assert hard_labels(values) == [False, False, True, True, True]
    assert hard_labels(values, 0.8) == [False, False, False, False, True]
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.1, -0.4]])
    for threshold in (0.5, 0.8):
        target = torch.tensor([hard_labels(values, threshold)], dtype=torch.float32)
        assert prm_loss(logits, torch.tensor([values]), "hard", threshold).item() == pytest.approx(
            F.binary_cross_entropy_with_logits(logits, target).item(), abs=1e-6)
    with pytest.raises(ValueError, match="step 1: value 1.5 is outside"):
        hard_labels([0.2, 1.5])
    with pytest.raises(ValueError, match="threshold must be in"):
        hard_labels([0.2], 0.0)


def test_dpo_export_pairs_correct_and_wrong_paths_by_shared_prefix(tmp_path):
    rows = export(tmp_path, "dpo")
    assert rows == [
        {"prompt": CHAT, "chosen": [{"role": "assistant", "content": RESPONSE_3}],
         "rejected": [{"role": "assistant", "content": RESPONSE_4}], "question_id": "q1"},  # share Step 1
        {"prompt": CHAT, "chosen": [{"role": "assistant", "content": RESPONSE_5}],
         "rejected": [{"role": "assistant", "content": RESPONSE_4}], "question_id": "q1"},  # share Step 0 only
    ]  # leaf 6 (unverifiable) is never rejected; leaf 8 repeats leaf 3
    assert export(tmp_path, "dpo", "--max-pairs-per-question", "1") == rows[:1]
    assert export(tmp_path, "dpo", "--min-shared-steps", "1") == rows[:1]


def tie_tree() -> Tree:
    """Two correct and two wrong Finish leaves straight under the root: four pairs, all sharing
    only Step 0, so the seed alone orders them."""
    nodes = [node(0, None, 0, "root", ROOT_STEP, 0.5, visits=4),
             node(1, 0, 1, "finish", "Right one. The answer is B.", 1.0, True, "B"),
             node(2, 0, 1, "finish", "Wrong one. The answer is A.", 0.0, False, "A"),
             node(3, 0, 1, "finish", "Right two. The answer is B.", 1.0, True, "B"),
             node(4, 0, 1, "finish", "Wrong two. The answer is C.", 0.0, False, "C")]
    nodes[0].children = [1, 2, 3, 4]
    return Tree(question=question("t"), nodes=nodes, status="complete")


def test_dpo_pairs_are_deterministic_given_the_seed():
    from meds3.mcts.trajectories import extract_trajectories

    item = extract_trajectories(tie_tree())

    def pairs(seed, cap=None):
        return [(c["node_ids"][-1], r["node_ids"][-1], s) for s, c, r in preference_pairs(item, cap, seed)]

    assert pairs(0) == [(3, 2, 0), (1, 2, 0), (1, 4, 0), (3, 4, 0)]  # random.Random("0:t"): stable across Pythons
    assert pairs(0) == pairs(0) and pairs(0, cap=2) == pairs(0)[:2]
    assert sorted(pairs(1)) == sorted(pairs(0)) and pairs(1) != pairs(0)
    assert shared_steps({"node_ids": [0, 1, 3]}, {"node_ids": [0, 1, 4]}) == 1
    with pytest.raises(ValueError, match="max_pairs_per_question must be >= 1"):
        preference_pairs(item, 0)


def test_dpo_pairs_never_cross_trees(tmp_path):
    a, b = make_tree(), make_tree()
    a.source, b.source = "iter1", "iter2"  # one question searched in two iterations
    pairs = dpo_export([a, b], max_pairs_per_question=None, dedupe=False)
    assert len(pairs) == 6  # 3 correct x 1 wrong per tree; the same node ids across trees are no shared prefix


def test_export_errors_exit_2_and_write_nothing(tmp_path, capsys):
    write_trees(tmp_path / "run", n_questions=1)
    out = tmp_path / "x.jsonl"
    base = ["export", "--trees", str(tmp_path / "run"), "--out", str(out), "--no-progress"]
    assert main(base + ["--format", "dpo", "--min-shared-steps", "2"]) == 2
    assert "no dpo records in 1 tree(s)" in capsys.readouterr().err
    assert main(base + ["--format", "sft", "--top-k", "0"]) == 2
    assert "top_k must be >= 1" in capsys.readouterr().err
    assert main(base + ["--format", "prm", "--threshold", "1.5"]) == 2
    assert "threshold must be in (0, 1]" in capsys.readouterr().err
    assert main(["export", "--trees", str(tmp_path / "none"), "--format", "sft", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_export_functions_match_the_command(tmp_path):
    tree = make_tree()
    assert export(tmp_path, "sft") == sft_export([tree])
    assert export(tmp_path, "prm") == prm_export([tree])
    assert export(tmp_path, "dpo") == dpo_export([tree])


def test_prompt_config_and_shard_file_inputs(tmp_path, capsys):
    from datasets import load_dataset

    write_trees(tmp_path / "run", n_questions=1)
    shard = next((tmp_path / "run" / "trees").glob("*.jsonl"))
    (tmp_path / "prompt.yaml").write_text('system_prompt: ""\nstep_prefix: "Step {i}) "\n', encoding="utf-8")
    out = tmp_path / "sft.jsonl"
    assert main(["export", "--trees", str(shard), "--format", "sft", "--out", str(out), "--no-progress",
                 "--prompt-config", str(tmp_path / "prompt.yaml")]) == 0
    first = load_dataset("json", data_files=str(out), split="train")[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]  # no system turn configured
    assert first[1]["content"] == RESPONSE_3.replace("Step 0:", "Step 0)").replace("Step 1:", "Step 1)").replace(
        "Step 2:", "Step 2)")
    (tmp_path / "bad.yaml").write_text("step_prefix: 'Step'\n", encoding="utf-8")
    assert main(["export", "--trees", str(shard), "--format", "sft", "--out", str(out), "--no-progress",
                 "--prompt-config", str(tmp_path / "bad.yaml")]) == 2
    assert "step_prefix must contain '{i}'" in capsys.readouterr().err
