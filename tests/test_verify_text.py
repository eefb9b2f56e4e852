"""Open-answer verification: normalized exact match and token-F1 spans (drug-dose extraction style)."""

import pytest

from meds3.data.question import MedQuestion
from meds3.verify import extract_answer, token_f1, verify
from meds3.verify.statements import answer_tokens


def open_question(answer, task_type, **metadata):
    return MedQuestion(id=f"dose-{answer}", question="Indicate the dose of the drug mentioned in the sentence.",
                       answer=answer, task_type=task_type, source="drugdose", metadata=metadata)


EXACT_CASES = [
    # (id, gold, text, correct, extracted)
    ("case-and-period", "Overdose", "Step 1: The patient took 40 tablets.\n\nStep 2: The answer is overdose.",
     True, "overdose"),
    ("decimal-and-slash", "3.0 g/day", "The answer is 3 g/day.", True, "3 g day"),
    ("glued-unit", "10 mg/kg", "Step 2: The sentence gives the weight-based dose. The answer is 10mg/kg", True,
     "10 mg kg"),
    ("extra-word-is-wrong", "high", "The answer is High dose.", False, "high dose"),
    ("markdown-caps", "high", "Step 1: The dose exceeded the usual range.\n\n**Answer:** HIGH", True, "high"),
    ("bare-reply", "high", "high", True, "high"),
    ("because-clause-dropped", "low", "The answer is low, because the dose was below the usual range.", True, "low"),
    ("two-alternatives", "high", "The answer is high or low.", None, None),
    ("quoted-with-article", "overdose", 'The answer is "an overdose".', True, "overdose"),
    ("no-statement-long-text", "high", "Step 1: The sentence mentions the drug.\n\nStep 2: It was given repeatedly.",
     None, None),
]


@pytest.mark.parametrize("gold,text,correct,extracted", [c[1:] for c in EXACT_CASES], ids=[c[0] for c in EXACT_CASES])
def test_exact(gold, text, correct, extracted):
    question = open_question(gold, "exact")
    verdict = verify(text, question)
    assert (verdict.correct, verdict.extracted) == (correct, extracted), verdict.reason
    assert extract_answer(text, question) == extracted


SPAN_CASES = [
    # (id, gold, metadata, text, correct, extracted, f1 in reason)
    ("padding-above-threshold", "10 mg/kg", {}, "The answer is 10 mg/kg administered intravenously.",
     True, "10 mg kg administered intravenously", "0.75"),
    ("partial-recall", "50 mg twice daily", {}, "Step 3: The answer is 50 mg.", True, "50 mg", "0.67"),
    ("wrong-dose", "125-500 mg daily", {}, "The answer is 250 mg twice a day.", False, "250 mg twice day", "0.25"),
    ("too-much-padding", "high", {}, "The answer is a high dose of the drug.", False, "high dose of drug", "0.40"),
    ("exactly-threshold", "high", {}, "The answer is high dose levels.", True, "high dose levels", "0.50"),
    ("metadata-threshold", "high", {"f1_threshold": 0.8}, "The answer is high dose.", False, "high dose", "0.67"),
    ("exact-span", "20-25 mg/d", {}, "Answer: 20-25 mg/d", True, "20 25 mg d", "1.00"),
    ("no-overlap", "Overdose", {}, "The answer is a therapeutic dose.", False, "therapeutic dose", "0.00"),
]


@pytest.mark.parametrize("gold,metadata,text,correct,extracted,f1", [c[1:] for c in SPAN_CASES],
                         ids=[c[0] for c in SPAN_CASES])
def test_span(gold, metadata, text, correct, extracted, f1):
    verdict = verify(text, open_question(gold, "span", **metadata))
    assert (verdict.correct, verdict.extracted) == (correct, extracted), verdict.reason
    assert f"token F1 {f1}" in verdict.reason


def test_span_threshold_option_overrides_metadata():
    question = open_question("high", "span", f1_threshold=0.9)
    text = "The answer is a high dose of the drug."
    assert verify(text, question).correct is False
    assert verify(text, question, f1_threshold=0.4).correct is True


def test_span_beats_substring_matching():
    # MedS3's substring check calls this correct because "high" occurs in it
    verdict = verify("The answer is not clear; doses were high in some and low in most patients overall.",
                     open_question("high", "span"))
    assert verdict.correct is not True


def test_answer_tokens_normalization():
    assert answer_tokens("The Nernst equation.") == ["nernst", "equation"]
    assert answer_tokens("10mg/kg") == ["10", "mg", "kg"]
    assert answer_tokens("3.00 g, 1,000 mL") == ["3", "g", "1000", "ml"]
    assert answer_tokens("ＨＩＧＨ") == ["high"]


def test_token_f1_values():
    assert token_f1(["a", "b"], ["a", "b"]) == 1.0
    assert token_f1([], ["a"]) == 0.0
    assert token_f1(["high", "dose"], ["high"]) == pytest.approx(2 / 3)
