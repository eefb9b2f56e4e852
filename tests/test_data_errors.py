"""Bad input: every malformed record names file, line and field; skip mode loses nothing valid."""

import json
import logging

import pytest

from meds3.data import DataError, load_questions

GOOD = {"id": "q1", "question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "B"}


def write_lines(tmp_path, lines, name="seed.jsonl"):
    p = tmp_path / name
    p.write_bytes(b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines))
    return p


def rec(**kw):
    r = dict(GOOD)
    r.update(kw)
    return json.dumps({k: v for k, v in r.items() if v is not ...})


def error_of(path, **kw):
    with pytest.raises(DataError) as info:
        load_questions(path, **kw)
    return info.value


@pytest.mark.parametrize("line, where_field, fragment", [
    ('{"id": "q2", "question": "x", ', (None,), "invalid JSON"),
    (rec(id="q2", question=...), ("question",), "is missing"),
    (rec(id="q2", question="  "), ("question",), "is empty"),
    (rec(id="q2", options={}), ("options",), "is empty but answer is 'B'"),
    (rec(id="q2", answer="E"), ("answer",), "is 'E' but options are A-B"),
    (rec(id="q2", question=["a", "list"]), ("question",), "must be text, got list"),
    (rec(id="q2", options="A. x B. y"), ("options",), "must be a mapping of letter to text, got str"),
    (rec(id="q2", options={"A": "x", "B": 3.5, "C": None}), ("options",), "option C must be text, got NoneType"),
    (rec(id="q2", answer=2), ("answer",), "must be an option letter, got int 2"),
    (rec(id=["q2"]), ("id",), "must be a string or integer, got list"),
    (rec(id="q2", metadata=[1]), ("metadata",), "must be a mapping, got list"),
    (rec(id="q2", task_type="essay"), ("task_type",), "is 'essay', expected one of"),
    ('["not", "an", "object"]', (None,), "expected a JSON object, got list"),
    (rec(id="q1"), ("id",), "duplicate id 'q1' (first at line 1)"),
])
def test_malformed_record_names_file_line_field(tmp_path, line, where_field, fragment):
    path = write_lines(tmp_path, [rec(), line])
    err = error_of(path)
    assert err.path == str(path) and err.where == "line 2" and err.field == where_field[0]
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:line 2: ")


def test_message_reads_like_the_style_guide(tmp_path):
    path = write_lines(tmp_path, [rec(answer="E", options={"A": "a", "B": "b", "C": "c", "D": "d"})])
    assert str(error_of(path)) == f"{path}:line 1: field 'answer' is 'E' but options are A-D"


def test_empty_file(tmp_path):
    for content in (b"", b"\n\n  \n", b"\xef\xbb\xbf"):
        p = tmp_path / "empty.jsonl"
        p.write_bytes(content)
        err = error_of(p, on_error="skip")  # a file-level problem raises even in skip mode
        assert str(err) == f"{p}: file is empty"


def test_missing_file(tmp_path):
    assert "file does not exist" in str(error_of(tmp_path / "nope.jsonl"))


def test_bom_and_crlf_are_tolerated(tmp_path):
    p = tmp_path / "crlf.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + rec().encode() + b"\r\n" + rec(id="q2").encode() + b"\r\n")
    qs = load_questions(p)
    assert [q.id for q in qs] == ["q1", "q2"] and qs[0].question == "Which?"


def test_crlf_csv(tmp_path):
    p = tmp_path / "virology_test.csv"
    p.write_bytes(b"\xef\xbb\xbfWhat?,a,b,c,d,C\r\nWhy?,a,b,c,d,A\r\n")
    assert [q.answer for q in load_questions(p)] == ["C", "A"]


def test_non_utf8_line_is_reported_and_skippable(tmp_path):
    latin1 = json.dumps({**GOOD, "id": "q2", "question": "caf\xe9"}, ensure_ascii=False).encode("latin-1")
    p = write_lines(tmp_path, [rec(), latin1, rec(id="q3")])
    err = error_of(p)
    assert err.where == "line 2" and "not valid UTF-8 (byte 0xe9 at column" in str(err)
    qs = load_questions(p, on_error="skip")
    assert [q.id for q in qs] == ["q1", "q3"]
    assert qs.report.skipped[0].where == "line 2"


def test_non_utf8_json_document_names_line(tmp_path):
    p = tmp_path / "arr.json"
    p.write_bytes(b'[\n{"id": "a", "question": "q", "options": {"A": "x"}, "answer": "A"},\n{"id": "\xff"}\n]')
    err = error_of(p)
    assert err.where == "line 3" and "not valid UTF-8 (byte 0xff)" in str(err)


def test_json_array_file_instead_of_lines(tmp_path):
    p = tmp_path / "seed.jsonl"  # the extension says lines, the content is one array
    p.write_text(json.dumps([GOOD, {**GOOD, "id": "q2"}], indent=2))
    assert [q.id for q in load_questions(p)] == ["q1", "q2"]
    p.write_text(json.dumps([GOOD, {**GOOD, "id": "q2", "answer": "Z"}]))
    err = error_of(p)
    assert (err.where, err.field) == ("record 1", "answer")


def test_invalid_json_document(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n  {"id": "a",\n  "question": }\n]')
    err = error_of(p)
    assert err.where == "line 3" and "invalid JSON" in str(err)


def test_skip_mode_loads_valid_records_and_reports(tmp_path, caplog):
    p = write_lines(tmp_path, [rec(), "{oops", rec(id="q3", answer="Q"), rec(id="q4"), rec(id="q4")])
    with caplog.at_level(logging.WARNING):
        qs = load_questions(p, on_error="skip")
    assert [q.id for q in qs] == ["q1", "q4"]
    report = qs.report
    assert report.loaded == 2
    assert [(s.where, s.field) for s in report.skipped] == [("line 2", None), ("line 3", "answer"),
                                                            ("line 5", "id")]
    summary = report.summary()
    assert summary.splitlines()[0] == f"{p}: loaded 2, skipped 3 malformed record(s):"
    assert "line 3: field 'answer': is 'Q' but options are A-B" in summary
    assert summary in caplog.text


def test_on_error_value_is_checked(tmp_path):
    with pytest.raises(ValueError, match="on_error must be"):
        load_questions(write_lines(tmp_path, [rec()]), on_error="ignore")


def test_undetectable_format(tmp_path):
    p = write_lines(tmp_path, [json.dumps({"prompt": "x", "label": 1})])
    err = error_of(p)
    assert "cannot detect the format" in str(err) and "['label', 'prompt']" in str(err)


@pytest.mark.parametrize("record, field, fragment", [
    ({"question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "C", "answer": "c"}, "answer_idx",
     "is 'C' but options are A-B"),
    ({"question": "q", "options": {}, "answer_idx": "A", "answer": "a"}, "options", "is empty"),
    ({"question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "A", "answer": "b"}, "answer",
     "is 'b' but option A (answer_idx) is 'a'"),
    ({"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": -1}, "cop",
     "MedMCQA test split has no public labels"),
    ({"question": "q", "opa": "a", "opb": "b", "opc": "c", "cop": 1}, "opd", "is missing"),
    ({"conversations": [{"from": "human", "value": "Q?\nA. x\nB. y"}], "eval": {"answer": "C"}}, "eval.answer",
     "is 'C' but options are A-B"),
    ({"conversations": [{"from": "human", "value": "Q?\nA. x\nB. y"}]}, "answer_idx", "is missing"),
    ({"qtext": "q", "ra": 9, "answers": [{"aid": 1, "atext": "a"}]}, "ra", "is 9 but answer ids are [1]"),
])
def test_format_specific_errors(tmp_path, record, field, fragment):
    err = error_of(write_lines(tmp_path, [json.dumps(record)]))
    assert err.where == "line 1" and err.field == field and fragment in str(err)


def test_mmlu_wrong_column_count_and_answer(tmp_path):
    p = tmp_path / "anatomy_test.csv"
    p.write_text("Q1,a,b,c,d,A\nQ2,a,b,c,B\nQ3,a,b,c,d,F\n")
    err = error_of(p)
    assert err.where == "line 2" and "expected 6 columns (question, A, B, C, D, answer), got 5" in str(err)
    qs = load_questions(p, on_error="skip")
    assert [q.id for q in qs] == ["anatomy_test_0"]
    assert [(s.where, s.field) for s in qs.report.skipped] == [("line 2", None), ("line 3", "answer")]


def test_pubmedqa_bad_decision(tmp_path):
    p = tmp_path / "ori_pqal.json"
    p.write_text(json.dumps({"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "perhaps"}}))
    err = error_of(p)
    assert (err.where, err.field) == ("record '1'", "final_decision")
