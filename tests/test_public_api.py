"""The public API: ``import meds3`` is light, every name resolves, ``answer_many`` shares one
engine and one PRM, and the selector registry says which selectors need a PRM."""

from __future__ import annotations

import subprocess
import sys

import pytest
from model_paths import model_path
from scripted_engine import ScriptedEngine

import meds3
from meds3.data.question import MedQuestion
from meds3.infer.selectors import PRM_SELECTORS, SELECTORS, Selection, needs_prm, register_selector

QUESTIONS = [
    MedQuestion(id=f"q{i}", question=f"A patient has symptom {i}. Which drug?", task_type="multiple_choice",
                options={"A": "aspirin", "B": "heparin", "C": "insulin"}, answer="B")
    for i in range(3)
]


def test_import_meds3_loads_neither_torch_nor_ray():
    code = ("import sys, meds3; heavy = [m for m in ('torch', 'ray', 'transformers', 'vllm') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_to_its_module_object():
    import meds3.engines.config
    import meds3.evolve.loop
    import meds3.infer.api
    import meds3.rollout.runner

    for name in meds3.__all__:
        assert getattr(meds3, name) is not None, name
    assert meds3.run_evolve is meds3.evolve.loop.run
    assert meds3.answer_many is meds3.infer.api.answer_many
    assert meds3.EngineConfig is meds3.engines.config.EngineConfig
    assert meds3.run_rollout is meds3.rollout.runner.run_rollout
    assert "answer_many" in dir(meds3)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        meds3.nothing  # noqa: B018


def test_verify_is_callable_and_still_the_package():
    import meds3.verify.api  # the package attribute is set by this import

    verdict = meds3.verify("Step 1: heparin.\n\nThe answer is B.", QUESTIONS[0])
    assert (verdict.correct, verdict.extracted) == (True, "B")
    assert meds3.verify.api.verify is meds3.verify.verify  # still the package, with its modules


def test_register_selector_records_whether_it_needs_a_prm(monkeypatch):
    monkeypatch.setitem(SELECTORS, "first", lambda answers, scores: Selection(answers[0], 0))
    monkeypatch.setitem(PRM_SELECTORS, "first", True)
    register_selector("first", SELECTORS["first"], needs_prm=False)
    assert needs_prm("first") is False and needs_prm("majority") is False and needs_prm("p-vs") is True
    with pytest.raises(ValueError, match="must be callable"):
        register_selector("broken", None)


class CountingBuilds:
    """Wraps ``meds3.engines.build_engine``: counts the engines built."""

    def __init__(self, real):
        self.real, self.count = real, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.real(*args, **kwargs)


def _answers(results):
    return [(a.answer, a.text, a.selector, a.scores, a.correct, [r.text for r in a.responses]) for a in results]


def test_answer_many_builds_one_engine_and_answers_like_answer(monkeypatch):
    import meds3.engines

    path = model_path("tiny-random-llama")
    builds = CountingBuilds(meds3.engines.build_engine)
    monkeypatch.setattr(meds3.engines, "build_engine", builds)
    # batch_invariant: a question's tokens do not depend on the others in its batch
    kwargs = dict(n=2, selector="majority", max_new_tokens=12, seed=3, batch_invariant=True, dtype="float32")
    many = meds3.answer_many(QUESTIONS, policy=str(path), **kwargs)
    assert builds.count == 1 and len(many) == 3
    one_by_one = [meds3.answer(q, policy=str(path), **kwargs) for q in QUESTIONS]
    assert builds.count == 4  # answer() builds its own engine on every call
    assert _answers(many) == _answers(one_by_one)
    # a ready engine is reused and left open; an EngineConfig is built once
    engine = meds3.build_engine_from(meds3.EngineConfig(str(path), engine={"batch_invariant": True,
                                                                          "dtype": "float32"}))
    try:
        again = meds3.answer_many(QUESTIONS, policy=engine, n=2, selector="majority", max_new_tokens=12, seed=3)
        assert _answers(again) == _answers(many) and builds.count == 5
    finally:
        engine.close()


class Scorer:
    """A PRM stub: counts its calls; every step scores 0.5."""

    def __init__(self):
        self.calls = 0

    def score(self, question, trajectories):
        self.calls += 1
        return [[0.5] * len(t) for t in trajectories]


def test_the_prm_is_loaded_once_and_only_for_a_selector_that_reads_it():
    scorer = Scorer()

    def engine():
        return ScriptedEngine(right="B", wrong="C", p_right=1.0)

    scored = meds3.answer_many(QUESTIONS, policy=engine(), prm=scorer, n=2, selector="p-vs")
    assert scorer.calls == 3 and [a.answer for a in scored] == ["B", "B", "B"]
    assert scored[0].scores == {"B": 1.0}  # vote-sum of min step score 0.5 over 2 responses
    majority = meds3.answer_many(QUESTIONS, policy=engine(), prm=scorer, n=2, selector="majority")
    assert scorer.calls == 3 and majority[0].responses[0].step_scores is None  # majority reads no PRM
    fallback = meds3.answer_many(QUESTIONS[:1], policy=engine(), n=2, selector="p-vs")
    assert fallback[0].selector == "majority"  # a PRM selector without a PRM
