"""Numeric verification: number formats, units, percent, tolerance and range edges."""

import pytest

from meds3.data.question import MedQuestion
from meds3.verify import extract_answer, verify
from meds3.verify.units import convert, normalize_unit


def numeric(answer, **metadata):
    return MedQuestion(id=f"calc-{answer}", question="Compute the value.", answer=answer, task_type="numeric",
                       domain="clinical_calculation", metadata=metadata)


BMI = numeric("24.2", unit="kg/m^2")
HUNDRED = numeric("100")
CRCL = numeric("64.8", unit="mL/min")
EGFR_RANGE = numeric("98.2", unit="mL/min/1.73 m^2", range=[93.29, 103.11])
ABS = numeric("10", tolerance=0, abs_tolerance=0.5)
PERCENT_UNIT = numeric("12.5", unit="%")
FRACTION = numeric("0.125")
PLAIN_12_5 = numeric("12.5")
SMALL = numeric("0.0012")
COUNT = numeric("1200")
QT_MS = numeric("450", unit="ms")
GRAMS = numeric("1.2", unit="g")
GLUCOSE = numeric("5.5", unit="mmol/L")
NEGATIVE = numeric("-3.5")
BIG = numeric("1234.5", unit="mL")
DAYS = numeric("7")

CASES = [
    # (id, question, text, correct, extracted)
    ("bmi-unit-superscript", BMI, "Step 1: BMI = weight / height^2.\n\nStep 2: 70 / 1.70^2 = 24.22.\n\n"
                                  "Step 3: The answer is 24.2 kg/m².", True, "24.2"),
    ("bmi-within-1pct", BMI, "The answer is 24.4 kg/m^2.", True, "24.4"),
    ("bmi-float-boundary-inside", BMI, "The answer is 24.442", True, "24.442"),
    ("bmi-float-boundary-outside", BMI, "The answer is 24.443", False, "24.443"),
    ("bmi-equation-in-statement", BMI, "The answer is BMI = 70 / (1.70)^2 = 24.2 kg/m².", True, "24.2"),
    ("bmi-parenthetical-range", BMI, "The answer is 24.2 kg/m^2 (normal range 18.5-24.9).", True, "24.2"),
    ("bmi-far-off", BMI, "Step 2: Using pounds by mistake, the answer is 53.4.", False, "53.4"),
    ("boundary-upper-exact", HUNDRED, "The answer is 101.", True, "101.0"),
    ("boundary-upper-just-out", HUNDRED, "The answer is 101.01.", False, "101.01"),
    ("boundary-lower-exact", HUNDRED, "The answer is 99", True, "99.0"),
    ("boundary-lower-just-out", HUNDRED, "The answer is 98.99", False, "98.99"),
    ("abs-tolerance-edge", ABS, "Answer: 10.5", True, "10.5"),
    ("abs-tolerance-out", ABS, "Answer: 10.51", False, "10.51"),
    ("range-upper-bound", EGFR_RANGE, "The answer is 103.11 mL/min/1.73 m².", True, "103.11"),
    ("range-just-above", EGFR_RANGE, "The answer is 103.2 mL/min/1.73 m².", False, "103.2"),
    ("range-below", EGFR_RANGE, "The answer is 93 mL/min/1.73 m²", False, "93.0"),
    ("crcl-steps-approx", CRCL, "Step 1: CrCl = (140 - age) x weight / (72 x SCr).\n\nStep 2: (140 - 60) x 70 / "
                                "(72 x 1.2) = 64.8.\n\nStep 3: The answer is ≈ 64.8 mL/min.", True, "64.8"),
    ("thousands-comma", BIG, "The answer is 1,234.5 mL.", True, "1234.5"),
    ("percent-with-percent-unit", PERCENT_UNIT, "Step 2: 1/8 of patients. The answer is 12.5%.", True, "12.5"),
    ("percent-word", PERCENT_UNIT, "The answer is 12.5 percent.", True, "12.5"),
    ("fraction-against-percent-unit", PERCENT_UNIT, "The answer is 0.125.", False, "0.125"),
    ("percent-against-unitless-fraction", FRACTION, "The answer is 12.5%.", True, "12.5%"),
    ("percent-against-unitless-number", PLAIN_12_5, "The answer is 12.5%.", True, "12.5%"),
    ("percent-wrong-both-readings", FRACTION, "The answer is 15%.", False, "15.0%"),
    ("scientific-e", SMALL, "The answer is 1.2e-3.", True, "0.0012"),
    ("times-ten-caret", COUNT, "The answer is 1.2 × 10^3.", True, "1200.0"),
    ("times-ten-superscript", COUNT, "The answer is 1.2 × 10³ cells/µL.", True, "1200.0"),
    ("latex-times", COUNT, "Final answer: $\\boxed{1.2 \\times 10^{3}}$", True, "1200.0"),
    ("seconds-to-ms", QT_MS, "Step 3: The QT interval is 0.45 s. The answer is 0.45 s.", True, "450.0"),
    ("mg-to-g", GRAMS, "The answer is 1200 mg.", True, "1.2"),
    ("unconvertible-unit", GLUCOSE, "The answer is 99 mg/dL.", False, "99.0"),
    ("negative", NEGATIVE, "Step 2: The base excess is negative. The answer is -3.5 mEq/L.", True, "-3.5"),
    ("unicode-minus", NEGATIVE, "The answer is −3.5", True, "-3.5"),
    ("approximately-days", DAYS, "The answer is approximately 7 days.", True, "7.0"),
    ("range-between", DAYS, "The answer is between 6 and 8 days.", None, None),
    ("range-dash", DAYS, "The answer is 6-8 days.", None, None),
    ("range-to", DAYS, "The answer is 6 to 8 days.", None, None),
    ("two-numbers", BMI, "The answer is 24.2 or 24.3.", None, None),
    ("ratio", DAYS, "The answer is 120/80.", None, None),
    ("negated", DAYS, "The answer is not 7.", None, None),
    ("decimal-comma", PLAIN_12_5, "The answer is 12,5.", None, None),
    ("last-line-bare-number", BMI, "Step 2: 70 / 2.89 = 24.22.\n\n**24.2 kg/m²**", True, "24.2"),
    ("no-answer", BMI, "Step 1: We need the weight and the height to compute BMI.", None, None),
    ("statement-without-number", BMI, "The answer is given by the BMI formula.", None, None),
    ("revision", HUNDRED, "Step 2: The answer is 90.\n\nStep 3: Wait, I forgot the constant; the answer is 100.",
     True, "100.0"),
]


@pytest.mark.parametrize("question,text,correct,extracted", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_numeric(question, text, correct, extracted):
    verdict = verify(text, question)
    assert (verdict.correct, verdict.extracted) == (correct, extracted), verdict.reason
    assert extract_answer(text, question) == extracted


def test_options_override_metadata_tolerance():
    assert verify("The answer is 105.", HUNDRED).correct is False
    assert verify("The answer is 105.", HUNDRED, tolerance=0.05).correct is True
    assert verify("The answer is 105.", HUNDRED, range=[90, 104]).correct is False


def test_range_reason_is_readable():
    verdict = verify("The answer is 103.2", EGFR_RANGE)
    assert verdict.reason.startswith("103.2 outside accepted range [93.29, 103.11]")


@pytest.mark.parametrize("unit,expected", [("kg/m²", "kg/m2"), ("KG/M^2", "kg/m2"), ("µg", "ug"), ("percent", "%"),
                                           (" mL/min ", "ml/min"), ("", None)])
def test_normalize_unit(unit, expected):
    assert normalize_unit(unit) == expected


@pytest.mark.parametrize("value,source,target,expected", [
    (0.45, "s", "ms", 450.0), (1200, "mg", "g", 1.2), (6.0, "L/h", "mL/min", 100.0),
    (99, "mg/dL", "mmol/L", None), (5, "mg", "mL", None), (3, "mmHg", "kPa", None)])
def test_convert(value, source, target, expected):
    result = convert(value, source, target)
    assert result == pytest.approx(expected) if expected is not None else result is None
