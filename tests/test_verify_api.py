"""The verify API contract: never raises on model output, rejects bad questions, registry, real data."""

import dataclasses
import json
import random

import pytest

from meds3.data.question import TASK_TYPES, MedQuestion
from meds3.verify import (
    VERIFIERS,
    Extraction,
    Verdict,
    Verifier,
    extract_answer,
    get_verifier,
    register_verifier,
    verify,
)

QUESTIONS = [
    MedQuestion(id="mc", question="?", options={"A": "yes", "B": "no", "C": "Nernst equation", "D": "a beta blocker"},
                answer="C"),
    MedQuestion(id="yn", question="?", answer="maybe", task_type="yes_no"),
    MedQuestion(id="num", question="?", answer="24.2", task_type="numeric", metadata={"unit": "kg/m^2"}),
    MedQuestion(id="num-range", question="?", answer="98", task_type="numeric", metadata={"range": [90, 100]}),
    MedQuestion(id="ex", question="?", answer="10 mg/kg", task_type="exact"),
    MedQuestion(id="span", question="?", answer="50 mg twice daily", task_type="span"),
]
# why: characters that stress the parsers: cue words, letters, digits, brackets, units, LaTeX, unicode
ALPHABET = list("ABCDEabcde0123456789.,;:()[]{}^/%-+=*_$\\ \n\t~≈×−–²³⁻µμ") + [
    "The answer is ", "Answer:", "\\boxed{", "option ", " or ", "not ", "yes", "no", "maybe", "e-", "×10^",
    "Step 1: ", "**", "１", "\u200b", "\ud800", "🙂", "ﬁ", "\u0301", "٣", "Ⅻ", "\x00"]


def random_texts(count, seed=0):
    rng = random.Random(seed)
    for _ in range(count):
        yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80)))


@pytest.mark.parametrize("question", QUESTIONS, ids=[q.id for q in QUESTIONS])
def test_never_raises_on_random_text(question):
    verifier = get_verifier(question.task_type)
    for text in random_texts(400, seed=sum(map(ord, question.id))):
        # the raw verifier too, so the safety net in verify() is not what keeps this green
        for verdict in (verify(text, question), verifier.verify(text, question)):
            assert isinstance(verdict, Verdict)
            assert verdict.correct in (True, False, None)
            assert verdict.reason and not verdict.reason.startswith("verifier error")
            assert (verdict.extracted is None) == (verdict.correct is None)


@pytest.mark.parametrize("text", [None, "", " \n\t ", b"The answer is (C)", b"\xff\xfe\x00", 42, 3.5, ["A"],
                                  object(), "\ud800\udfff", "A" * 10, "(" * 5000, "The answer is " * 3000,
                                  "not " * 20000, "The answer is " + "not " * 5000, "1," * 50000, "\\boxed{" * 5000,
                                  "1e" * 20000 + "9" * 400, "1 × 10^9999", "The answer is " + "9" * 5000])
@pytest.mark.parametrize("question", QUESTIONS, ids=[q.id for q in QUESTIONS])
def test_never_raises_on_odd_inputs(question, text):
    verdict = verify(text, question)
    assert verdict.correct in (True, False, None)
    assert not verdict.reason.startswith("verifier error"), verdict.reason
    assert extract_answer(text, question) == verdict.extracted


def test_broken_str_object_is_no_answer():
    class Broken:
        def __str__(self):
            raise RuntimeError("boom")

    assert verify(Broken(), QUESTIONS[0]) == Verdict(None, None, "no answer statement found")


def test_huge_text_answer_at_end_is_found():
    text = "Step 1: " + "The kidney regulates sodium. " * 40_000 + "\n\nStep 2: The answer is (C)."
    assert len(text) > 1_000_000
    assert verify(text, QUESTIONS[0]) == Verdict(True, "C", "C matches gold C; stated '(C).' (letter)")


def test_bytes_are_decoded():
    assert verify(b"The answer is (C)", QUESTIONS[0]).correct is True


@pytest.mark.parametrize("question,message", [
    (MedQuestion(id="q1", question="?", options={"A": "x", "B": "y", "C": "z", "D": "w"}, answer="E"),
     "answer 'E' is not among options A-D"),
    (MedQuestion(id="q2", question="?", answer="A"), "multiple_choice needs options"),
    (MedQuestion(id="q3", question="?", answer="perhaps", task_type="yes_no"), "yes_no answer must be yes"),
    (MedQuestion(id="q4", question="?", answer="about ten", task_type="numeric"), "is not a number"),
    (MedQuestion(id="q5", question="?", answer="5", task_type="numeric", metadata={"range": [6, 4]}), "lo > hi"),
    (MedQuestion(id="q6", question="?", answer="5", task_type="numeric", metadata={"tolerance": -1}), ">= 0"),
    (MedQuestion(id="q7", question="?", answer="...", task_type="exact"), "empty after normalization"),
    (MedQuestion(id="q8", question="?", answer="x", task_type="span", metadata={"f1_threshold": 2}), "[0, 1]"),
])
def test_bad_question_raises_value_error(question, message):
    with pytest.raises(ValueError, match="q[0-9]") as info:
        verify("The answer is (A).", question)
    assert message in str(info.value)


def test_unknown_task_type_raises():
    question = MedQuestion(id="q", question="?", answer="x", task_type="exact")
    question.task_type = "ranking"
    with pytest.raises(ValueError, match="no verifier for task type 'ranking'"):
        verify("The answer is x", question)


def test_unknown_option_raises():
    with pytest.raises(ValueError, match="tolerence"):
        verify("The answer is 24.2", QUESTIONS[2], tolerence=0.1)


def test_verdict_is_frozen():
    verdict = verify("The answer is (C)", QUESTIONS[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.correct = False
    assert verdict.verifiable


def test_extract_answer_needs_no_gold():
    unlabelled = MedQuestion(id="u", question="?", answer="", task_type="numeric")
    assert extract_answer("The answer is 1,200 mL", unlabelled) == "1200.0"


def test_registry_new_task_type_is_one_class():
    @register_verifier("_test_contains")
    class ContainsVerifier(Verifier):
        def extract(self, text, question):
            return Extraction(text.strip().lower() or None, "whole text")

        def check(self, answer, question, **options):
            return Verdict(question.answer in answer, answer, "substring")

    try:
        assert isinstance(get_verifier("_test_contains"), ContainsVerifier)
        assert ContainsVerifier.name == "_test_contains"
        question = MedQuestion(id="c", question="?", answer="x", task_type="_test_contains")
        assert verify("XYZ", question).correct is True
        with pytest.raises(ValueError, match="already registered"):
            register_verifier("_test_contains")(type("Other", (ContainsVerifier,), {}))
    finally:
        VERIFIERS.pop("_test_contains", None)
        TASK_TYPES.remove("_test_contains")


def test_builtin_registry():
    assert set(VERIFIERS) >= {"multiple_choice", "yes_no", "numeric", "exact", "span"}


MC_FILES = ["medqa_4opt_test.jsonl", "medqa_5opt_test.jsonl", "medmcqa_dev.jsonl", "mmlu_medical_test.jsonl",
            "pubmedqa_test500.jsonl", "bioasq_yesno.jsonl", "pubhealth_test.jsonl"]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", MC_FILES)
def test_real_questions_gold_letter_and_gold_text(shared_data, name):
    """Every real item: the gold letter verifies True; the gold option text is never judged False."""
    path = shared_data / "eval" / name
    if not path.exists():
        pytest.skip(f"{name} missing")
    text_judged = 0
    for line in path.read_text(encoding="utf-8").splitlines()[:600]:
        record = json.loads(line)
        question = MedQuestion(id=record["id"], question=record["question"], options=record["options"],
                               answer=record["answer"], task_type="multiple_choice")
        assert verify(f"Step 1: ...\n\nStep 2: The answer is ({question.answer}).", question).correct is True
        by_text = verify(f"The answer is {question.options[question.answer]}", question)
        assert by_text.correct is not False, (question.id, by_text.reason)
        text_judged += by_text.correct is True
        wrong = next(letter for letter in question.options if letter != question.answer)
        assert verify(f"Step 3: Thus, the answer is {wrong}.", question).correct is False
    assert text_judged > 0


@pytest.mark.shared_data
def test_real_drugdose_golds_verify_as_exact_and_span(shared_data):
    path = shared_data / "eval" / "drugdose_test.jsonl"
    if not path.exists():
        pytest.skip("drugdose_test.jsonl missing")
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for task_type in ("exact", "span"):
            question = MedQuestion(id=record["id"], question=record["question"], answer=record["answer"],
                                   task_type=task_type)
            text = f"Step 1: The sentence names the dose.\n\nStep 2: The answer is {record['answer']}."
            assert verify(text, question).correct is True, (record["id"], task_type)


@pytest.mark.parametrize("question,options,message", [
    (QUESTIONS[2], {"tolerance": "loose"}, "tolerance must be a number"),
    (QUESTIONS[2], {"range": [1]}, "range must be [lo, hi]"),
    (QUESTIONS[5], {"f1_threshold": -0.1}, "f1_threshold must be in [0, 1]"),
])
def test_bad_option_value_raises_before_reading(question, options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        verify("", question, **options)
