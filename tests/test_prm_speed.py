"""The fast PRM scorer gives the scores of the straightforward computation.

The scorer merges the LoRA adapter (float32) and packs the responses of a question as a prefix
tree in one row (the question encoded once); the reference here is the plain way: the adapter
unmerged and one unpadded forward pass per trajectory. On a PRM trained on tiny-random-llama the
two agree within 1e-5 for responses of different lengths, several per question, batched across
questions and padded, and with prefixes and duplicates among them. Speed itself is measured by
``benchmarks/bench_prm.py``; here only what makes it fast is pinned: the shared tokens are
encoded once.
"""

from __future__ import annotations

import dataclasses

import pytest
from train_trees import question, write_trees

from meds3.data.prompts import ROOT_STEP
from meds3.engines import resolve_model
from meds3.train import PRMScorer, PRMTrainConfig, fit_prm
from meds3.train.labels import tokenize_trajectory
from meds3.train.scorer import pack_prefix_tree

LONG = [ROOT_STEP, "BMI is weight divided by height squared.", "Height squared: 1.75 * 1.75 = 3.0625 m²",
        "70 / 3.0625 ≈ 22.9", "Compare 22.9 with the options: B is 22.9.", "The answer is B."]
RESPONSES = [  # one question's responses: lengths 2 to 8 steps, two sharing three steps, one a prefix of another
    LONG,
    [ROOT_STEP, "The answer is D."],
    [ROOT_STEP, "Weight 70 kg.", "Height 1.75 m.", "Square it: 3.06.", "Divide: 22.9.", "Round: 22.9.",
     "Compare with the options.", "The answer is B."],
    LONG[:3] + ["70 / 3.0625 = 23.9", "The answer is C."],
    LONG[:4],
]


@pytest.fixture(scope="module")
def prm(tmp_path_factory, tiny_model_path):
    root = tmp_path_factory.mktemp("prm_speed")
    write_trees(root / "rollout", n_questions=2)
    config = PRMTrainConfig(trees=[str(root / "rollout")], base_model="tiny-random-llama",
                            output_dir=str(root / "out"), r=8, alpha=16, dropout=0.0, learning_rate=3e-3,
                            max_steps=4, batch_size=8)
    fit_prm(config, progress=False)
    return config.output_dir


@pytest.fixture(scope="module")
def reference(prm):
    """Scores the plain way: LoRA unmerged, one unpadded forward pass per trajectory."""
    import torch
    from peft import PeftModel

    from meds3.train.common import load_tokenizer
    from meds3.train.scorer import find_adapter_dir, load_prm_base, step_probability

    adapter = find_adapter_dir(prm)
    tok = load_tokenizer(adapter)
    model = PeftModel.from_pretrained(load_prm_base(resolve_model("tiny-random-llama"), tok), str(adapter)).eval()
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())  # a trained adapter

    def score(q, trajectories):
        out = []
        for steps in trajectories:
            tt = tokenize_trajectory(tok, q, steps)
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([tt.input_ids])).logits[0, :, 0]
            out.append(step_probability(logits)[tt.step_ends].tolist())
        return out

    return score


def assert_close(got, want, tol=1e-5):
    assert [len(s) for s in got] == [len(s) for s in want]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=tol)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_one_question_many_responses_equal_reference(prm, reference, batch_size):
    scorer = PRMScorer(prm, batch_size=batch_size)
    got = scorer.score(question(), RESPONSES)
    assert_close(got, reference(question(), RESPONSES))
    assert len({round(x, 4) for x in got[2]}) > 1  # the steps really get different scores


def test_batched_across_questions_equal_reference(prm, reference):
    """Questions of different lengths, several responses each, rows split over passes and padded."""
    scorer = PRMScorer(prm, batch_size=3)
    q2 = dataclasses.replace(question("q2"), question=question().question
                             + " She is otherwise healthy and takes no medication; her blood pressure is normal.")
    items = [(question(), RESPONSES), (q2, RESPONSES[1:4]), (question("q3"), [LONG]), (question("q4"), [])]
    got = scorer.score_batch(items)
    assert [len(g) for g in got] == [5, 3, 1, 0]
    for (q, trajs), g in zip(items, got):
        assert_close(g, reference(q, trajs))


def test_padding_and_company_do_not_change_scores(prm):
    """A trajectory scores the same alone and beside longer ones (of its own and other questions)."""
    scorer = PRMScorer(prm, batch_size=8)
    alone = scorer.score(question(), [RESPONSES[1]])[0]
    with_own = scorer.score(question(), RESPONSES)[1]
    q2 = question("q2")
    with_others = scorer.score_batch([(q2, [LONG, RESPONSES[2]]), (question(), [RESPONSES[1]])])[1][0]
    assert with_own == pytest.approx(alone, abs=1e-6)
    assert with_others == pytest.approx(alone, abs=1e-6)


def test_same_question_object_across_items_shares_and_scores_right(prm, reference):
    """A search round calls score_batch with one path per item, the tree's question in each."""
    scorer = PRMScorer(prm, batch_size=8)
    q = question()
    got = scorer.score_batch([(q, [steps]) for steps in RESPONSES])
    assert_close([g[0] for g in got], reference(q, RESPONSES))


def test_duplicates_and_prefixes_score_like_the_prefix_reference(prm):
    scorer = PRMScorer(prm, batch_size=8)
    trajs = [LONG, LONG, LONG[:2], LONG[:5]]
    got = scorer.score(question(), trajs)
    assert got[0] == pytest.approx(got[1], abs=1e-6)
    slow = scorer.score_by_prefixes(question(), trajs)
    assert_close(got, slow)


def test_adapter_is_merged_on_float32(prm):
    from peft import PeftModel

    scorer = PRMScorer(prm)
    assert not isinstance(scorer.model, PeftModel)
    assert not any("lora" in n for n, _ in scorer.model.named_parameters())


def test_question_tokens_are_encoded_once_per_row(prm):
    """What the speed comes from: one forward pass for the question's responses, the shared
    prefix (chat-templated question and Step 0, more when responses share steps) in it once."""
    scorer = PRMScorer(prm, batch_size=8)
    calls = []
    forward = scorer.model.forward

    def counting(**kwargs):
        calls.append(kwargs["input_ids"])
        return forward(**kwargs)

    scorer.model.forward = counting
    scorer.score(question(), RESPONSES)
    del scorer.model.forward
    tokens = [tokenize_trajectory(scorer.tokenizer, question(), t).input_ids for t in RESPONSES]
    assert len(calls) == 1 and calls[0].shape[0] == 1
    head = len(tokenize_trajectory(scorer.tokenizer, question(), [ROOT_STEP]).input_ids)
    assert calls[0].shape[1] < sum(len(t) for t in tokens) - (len(tokens) - 1) * head


def test_pack_prefix_tree_layout():
    seqs = [[1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 4], [1, 2], [7]]
    tree = pack_prefix_tree(seqs)
    assert sorted(tree.input_ids) == [1, 2, 3, 4, 5, 7]  # each shared prefix once
    for seq, path in zip(seqs, tree.paths):
        assert [tree.input_ids[i] for i in path] == seq
        assert [tree.positions[i] for i in path] == list(range(len(seq)))
    n = len(tree.input_ids)
    for a in range(n):  # a may see b iff b lies on a's path: the mask ``b <= a < ends[b]`` says so
        seen = {b for b in range(n) if b <= a < tree.ends[b]}
        owner = next(p for p in tree.paths if a in p)
        assert seen == set(owner[: owner.index(a) + 1])
    assert pack_prefix_tree([]).input_ids == []


BF16_TOL = 2e-2  # bfloat16 weights: the docs' bar for the opt-in (measured ~8e-3 on SmolLM2-135M)


def test_bfloat16_precision_scores_close_to_float32(prm, reference):
    """The opt-in: adapter merged in float32, then the merged weights rounded to bfloat16 once."""
    import torch
    from peft import PeftModel

    scorer = PRMScorer(prm, precision="bfloat16")
    assert not isinstance(scorer.model, PeftModel)
    assert {p.dtype for p in scorer.model.parameters()} == {torch.bfloat16}
    got = scorer.score(question(), RESPONSES)
    assert_close(got, reference(question(), RESPONSES), tol=BF16_TOL)
    assert len(got[2]) == 8 and all(0.0 < x < 1.0 for s in got for x in s)


def test_default_precision_is_float32_on_cpu(prm):
    import torch

    auto, explicit = PRMScorer(prm), PRMScorer(prm, precision="float32")
    assert {p.dtype for p in auto.model.parameters()} == {torch.float32}
    assert auto.score(question(), RESPONSES) == explicit.score(question(), RESPONSES)


def test_unknown_precision_is_refused(prm):
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, got 'int8'"):
        PRMScorer(prm, precision="int8")


def test_prm_precision_round_trips_through_eval_config(tmp_path):
    from meds3.config import ConfigError, load_config
    from meds3.eval import EvalConfig
    from meds3.eval.config import PRM_PRECISIONS
    from meds3.train.scorer import PRECISIONS

    assert PRM_PRECISIONS == PRECISIONS  # the config checks the scorer's list without importing torch
    assert EvalConfig().prm_precision == "auto"
    path = tmp_path / "eval.yaml"
    path.write_text("prm: runs/prm\nprm_precision: bfloat16\n", encoding="utf-8")
    config = load_config(EvalConfig, path)
    assert config.prm_precision == "bfloat16"
    assert load_config(EvalConfig, overrides=["prm_precision=float32"]).prm_precision == "float32"
    with pytest.raises(ConfigError, match="prm_precision must be one of"):
        load_config(EvalConfig, overrides=["prm_precision=int8"])
