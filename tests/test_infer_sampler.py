"""The N-sample sampler and ``meds3.infer.answer``: scripted engine, then tiny-random-llama."""

from __future__ import annotations

import pytest
from model_paths import model_path
from scripted_engine import ScriptedEngine

from meds3.data.prompts import ROOT_STEP
from meds3.data.question import MedQuestion
from meds3.infer import BudgetConfig, Response, SamplerConfig, answer, question_seed, sample_responses

OPTIONS = {"A": "aspirin", "B": "heparin", "C": "warfarin", "D": "insulin"}


def mcq(i: int, gold: str = "B") -> MedQuestion:
    return MedQuestion(id=f"q{i}", question=f"Which drug is question {i} about?", options=OPTIONS, answer=gold)


class FixedScorer:
    """A PRM with hand-set scores: 0.9 on every step of a response answering B, else 0.4."""

    def __init__(self):
        self.calls = 0

    def score(self, question, trajectories):
        self.calls += 1
        return [[0.5] + [0.9 if "answer is B" in t[-1] else 0.4] * (len(t) - 1) for t in trajectories]


def test_responses_have_steps_answers_verdicts_and_tokens():
    engine = ScriptedEngine(right="B", wrong="C", p_right=0.5)
    out = sample_responses(engine, [mcq(0), mcq(1, gold="C")], SamplerConfig(n=4, max_new_tokens=64))
    assert len(engine.calls) == 1 and engine.calls[0] == 2  # one call: both questions, n=4 each
    assert [len(rs) for rs in out] == [4, 4]
    for q, rs in zip(("B", "C"), out):
        for j, r in enumerate(rs):
            assert r.index == j and r.question_id in ("q0", "q1")
            assert r.steps[0] == ROOT_STEP and r.steps[1] == r.text == f"Thinking. The answer is {r.answer}."
            assert r.answer in ("B", "C") and r.correct is (r.answer == q)
            assert r.num_tokens == r.thinking_tokens == 6 and r.answer_tokens == 0
            assert r.verdict.correct is r.correct
    assert Response.from_dict(out[0][0].to_dict()) == out[0][0]


def test_seeds_follow_the_question_not_the_batch():
    cfg = SamplerConfig(n=3, seed=5)
    together = sample_responses(ScriptedEngine(), [mcq(0), mcq(1)], cfg)
    alone = sample_responses(ScriptedEngine(), [mcq(1)], cfg)
    assert [r.text for r in together[1]] == [r.text for r in alone[0]]
    assert question_seed(5, "q1") == question_seed(5, "q1") != question_seed(6, "q1")
    assert question_seed(None, "q1") is None


def test_unlabelled_question_gets_answers_without_verdicts():
    q = MedQuestion(id="u", question="Which drug?", options=OPTIONS, answer="")
    [rs] = sample_responses(ScriptedEngine(), [q], SamplerConfig(n=2))
    assert all(r.answer in ("B", "C") and r.correct is None for r in rs)


def test_sampler_config_errors():
    with pytest.raises(ValueError, match="n must be >= 1"):
        SamplerConfig(n=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplerConfig(top_p=0)
    assert SamplerConfig(budget={"max_thinking_tokens": 8}).budget == BudgetConfig(max_thinking_tokens=8)


def test_answer_with_prm_uses_p_vs_and_returns_evidence():
    scorer = FixedScorer()
    result = answer(mcq(0), policy=ScriptedEngine(p_right=0.3), prm=scorer, n=8, seed=1)
    assert scorer.calls == 1 and len(result.responses) == 8
    votes_b = sum(r.answer == "B" for r in result.responses)
    votes_c = sum(r.answer == "C" for r in result.responses)
    assert result.scores == pytest.approx({a: v * s for a, v, s in (("B", votes_b, 0.9), ("C", votes_c, 0.4))
                                           if v})
    expected = "B" if 0.9 * votes_b >= 0.4 * votes_c else "C"
    assert result.selector == "p-vs" and result.answer == expected
    assert result.correct is (expected == "B") and result.text.endswith(f"The answer is {expected}.")
    assert all(r.step_scores is not None for r in result.responses)


def test_answer_without_prm_falls_back_to_majority():
    result = answer(mcq(0), policy=ScriptedEngine(p_right=0.5), n=5, seed=2)
    counts = {a: sum(r.answer == a for r in result.responses) for a in ("B", "C")}
    assert result.selector == "majority" and result.scores == {a: float(c) for a, c in counts.items() if c}
    with pytest.raises(ValueError, match="unknown selector"):
        answer(mcq(0), policy=ScriptedEngine(), selector="nope")


@pytest.fixture(scope="module")
def tiny():
    from meds3.engines import build_engine

    eng = build_engine(model_path("tiny-random-llama"), prefix_cache_mb=64)
    yield eng
    eng.close()


def test_tiny_model_sampling_is_exact_and_batch_invariant(tiny):
    cfg = SamplerConfig(n=2, max_new_tokens=6, seed=3)
    both = sample_responses(tiny, [mcq(0), mcq(1)], cfg)
    alone = sample_responses(tiny, [mcq(1)], cfg)
    assert [r.text for r in both[1]] == [r.text for r in alone[0]]
    for r in both[0] + both[1]:
        assert r.steps[0] == ROOT_STEP and 1 <= r.num_tokens <= 6
        assert r.answer is None and r.correct is None  # random weights state no answer
    forced = sample_responses(tiny, [mcq(0)], SamplerConfig(n=1, max_new_tokens=32, seed=3,
                                                            budget=BudgetConfig(max_thinking_tokens=4,
                                                                                answer_max_tokens=2)))
    r = forced[0][0]
    assert r.forced_stop and r.thinking_tokens == 4 and r.num_tokens == 4 + r.answer_tokens
    assert "The answer is" in r.text


def test_score_many_batches_across_questions_when_the_scorer_can():
    from meds3.infer import score_many

    class BatchScorer(FixedScorer):
        batch_calls = 0

        def score_batch(self, items):
            self.batch_calls += 1
            return [FixedScorer.score(self, q, t) for q, t in items]

    scorer = BatchScorer()
    out = sample_responses(ScriptedEngine(), [mcq(0), mcq(1)], SamplerConfig(n=3))
    score_many(scorer, [(mcq(0), out[0]), (mcq(1), out[1])])
    assert scorer.batch_calls == 1
    assert all(r.step_scores == [0.5, 0.9 if r.answer == "B" else 0.4] for rs in out for r in rs)


def test_on_question_hears_each_question_once_with_its_responses():
    heard = []
    out = sample_responses(ScriptedEngine(), [mcq(0), mcq(1), mcq(2)], SamplerConfig(n=2),
                           on_question=lambda i, rs: heard.append((i, rs)))
    assert [i for i, _ in heard] == [0, 1, 2]  # one generate call: finished together, in order
    assert all(rs is out[i] and [r.question_id for r in rs] == [f"q{i}"] * 2 for i, rs in heard)

