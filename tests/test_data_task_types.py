"""Task types inferred as users expect: plain-number golds are numeric (half a unit in the last
stated digit), options embedded in MedSSS question text are multiple choice, and a lone option
letter never becomes a span gold."""

import json

import pytest

from meds3.data import DataError, load_questions
from meds3.data.formats import infer_open_task_type, plain_number_tolerance, split_options
from meds3.verify import verify

FORMATS_DIR = "formats"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("gold, expected", [("24.2", "numeric"), ("-3", "numeric"), ("1,200", "numeric"),
                                            ("0.50", "numeric"), (".5", "numeric"), ("12.5%", "numeric"),
                                            ("10 mg", "span"), ("0.5 mg", "span"), ("yes", "yes_no"),
                                            ("Maybe", "yes_no"), ("overdose", "span"), ("1.2.3", "span"),
                                            ("-", "span"), ("24.2 kg/m^2", "span")])
def test_infer_open_task_type(gold, expected):
    assert infer_open_task_type(gold) == expected


@pytest.mark.parametrize("gold, tolerance", [("24.2", 0.05), ("120", 0.5), ("1,200", 0.5), ("-3", 0.5),
                                             ("0.50", 0.005), ("12.5%", 0.05), ("10 mg", None)])
def test_half_unit_of_last_digit(gold, tolerance):
    assert plain_number_tolerance(gold) == (pytest.approx(tolerance) if tolerance is not None else None)


def test_plain_number_gold_is_numeric_and_verified_as_number(tmp_path):
    path = write_jsonl(tmp_path / "calc.jsonl", [
        {"id": "bmi", "question": "What is the BMI?", "options": {}, "answer": "24.2"},
        {"id": "dose", "question": "Extract the dose.", "options": {}, "answer": "10 mg"},
        {"id": "yn", "question": "Is it?", "options": {}, "answer": "yes"},
        {"id": "count", "question": "How many?", "options": {}, "answer": "120"},
    ])
    qs = load_questions(path)
    bmi, dose, yn, count = qs
    assert (bmi.task_type, bmi.metadata) == ("numeric", {"tolerance": 0.0, "abs_tolerance": pytest.approx(0.05)})
    assert (dose.task_type, yn.task_type, count.task_type) == ("span", "yes_no", "numeric")
    assert qs.report.inferred_task_types == {"numeric": 2, "span": 1, "yes_no": 1}
    assert qs.report.inferred_summary() == "inferred task types: numeric 2, span 1, yes_no 1"

    assert verify("The answer is 24.2 kg/m^2.", bmi).correct is True
    assert verify("The answer is 24.24.", bmi).correct is True
    assert verify("The answer is 24.3.", bmi).correct is False
    unknown = verify("The answer is unknown.", bmi)
    assert unknown.correct is None and not unknown.verifiable
    assert verify("The answer is 120.4", count).correct is True
    assert verify("The answer is 121", count).correct is False


def test_tolerance_is_configurable(tmp_path):
    path = write_jsonl(tmp_path / "calc.jsonl", [
        {"id": "a", "question": "q", "options": {}, "answer": "24.2"},
        {"id": "b", "question": "q", "options": {}, "answer": "24.2", "metadata": {"tolerance": 0.1}},
    ])
    a, b = load_questions(path)
    assert b.metadata == {"tolerance": 0.1}  # the record's own tolerance is kept
    assert verify("The answer is 26", b).correct is True
    # per call, as for every numeric question
    assert verify("The answer is 24.3.", a, abs_tolerance=0.2).correct is True
    # per load
    wide = load_questions(path, numeric_tolerance={"tolerance": 0.01})[0]
    assert wide.metadata == {"tolerance": 0.01}
    assert verify("The answer is 24.4", wide).correct is True
    fixed = load_questions(path, numeric_tolerance=0.5)[0]
    assert fixed.metadata == {"tolerance": 0.0, "abs_tolerance": 0.5}
    with pytest.raises(ValueError, match="numeric_tolerance"):
        load_questions(path, numeric_tolerance=-1)
    with pytest.raises(ValueError, match="numeric_tolerance"):
        load_questions(path, numeric_tolerance={"rel_tol": 0.1})


def test_stated_task_type_is_not_inferred(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"id": "a", "question": "q", "options": {}, "answer": "24.2", "task_type": "span"},
        {"id": "b", "question": "q", "options": {"A": "x", "B": "y"}, "answer": "A"},
    ])
    qs = load_questions(path)
    assert [q.task_type for q in qs] == ["span", "multiple_choice"]
    assert qs[0].metadata == {}
    assert qs.report.inferred_task_types == {}


def test_saved_inferred_questions_round_trip(tmp_path):
    from meds3.data import save_questions

    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "question": "q", "options": {}, "answer": "1,200"}])
    qs = load_questions(path)
    again = load_questions(save_questions(tmp_path / "saved.jsonl", qs))
    assert [q.to_dict() for q in again] == [q.to_dict() for q in qs]
    assert again.report.inferred_task_types == {}  # the saved file states numeric


def test_conversations_open_number_is_numeric(tmp_path):
    path = tmp_path / "calc.json"
    path.write_text(json.dumps([{"id": 0, "conversations": [{"from": "human", "value": "Compute the BMI."}],
                                 "answer_idx": "24.2"}]))
    qs = load_questions(path)
    assert qs[0].task_type == "numeric" and qs.report.inferred_task_types == {"numeric": 1}


# ---------------------------------------------------------------- options embedded in MedSSS text

def test_medsss_blocks_with_stray_quote_are_multiple_choice(fixtures):
    qs = load_questions(fixtures / FORMATS_DIR / "MedQA_medsss.json")
    assert qs.report.format == "meds3_conversations"
    stray_line, stray_question, parenthesised = qs
    assert stray_line.task_type == "multiple_choice" and stray_line.answer == "C"
    assert stray_line.options == {"A": "Nifedipine", "B": "Enoxaparin", "C": "Clopidogrel", "D": "Spironolactone",
                                  "E": "Propranolol"}
    assert stray_line.question.endswith("medication regimen?")
    assert len(stray_question.options) == 4 and stray_question.answer == "C"
    assert stray_question.question.endswith("patient's symptoms?")  # the unmatched quote is gone
    assert parenthesised.options["E"] == "Pioglitazone" and parenthesised.answer == "A"
    assert qs.report.inferred_task_types == {}


@pytest.mark.parametrize("text", ["Q?\nA. x\nB. y\n\"", "Q?\nA. x\nB. y\"", "Q?\"\nA. x\nB. y\n\n  \" \n",
                                  "Q?\n(A) x\n(B) y", "Q?\nA) x\nB) y"])
def test_split_options_robust(text):
    assert split_options(text) == ("Q?", {"A": "x", "B": "y"})


def test_split_options_keeps_balanced_quotes():
    question, options = split_options('He said "stop"\nA. "x"\nB. y')
    assert question == 'He said "stop"' and options == {"A": '"x"', "B": "y"}


def test_lone_letter_gold_without_options_is_an_error(tmp_path):
    path = tmp_path / "MedQA.json"
    path.write_text(json.dumps([
        {"id": 0, "conversations": [{"from": "human", "value": "Q?\nA. x\nB. y"}], "eval": {"answer": "A"}},
        {"id": 41, "conversations": [{"from": "human", "value": "Which drug? Options: Nifedipine, Clopidogrel"}],
         "eval": {"answer": "C", "type": "step1"}},
    ]))
    with pytest.raises(DataError) as info:
        load_questions(path)
    message = str(info.value)
    assert message.startswith(f"{path}:record 1: field 'eval.answer'")
    assert "record id '41'" in message and "option letter" in message
    qs = load_questions(path, on_error="skip")
    assert len(qs) == 1 and qs.report.skipped[0].field == "eval.answer"


def test_lone_letter_gold_in_normalized_file_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "question": "q", "options": {}, "answer": "(C)"}])
    with pytest.raises(DataError, match=r"x.jsonl:line 1: field 'options' is empty but answer is '\(C\)'"):
        load_questions(path)


@pytest.mark.shared_data
def test_shared_open_answers_infer_types(shared_data):
    qs = load_questions(shared_data / "eval" / "drugdose_test.jsonl")
    assert all(q.task_type in ("span", "numeric") for q in qs)
    for q in qs:
        assert (q.task_type == "numeric") == (plain_number_tolerance(q.answer) is not None)
