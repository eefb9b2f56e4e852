"""Loaders: every format on a fixture written in it, with exact expected fields."""

import json

import pytest

from meds3.data import MedQuestion, load_questions, save_questions

FORMATS_DIR = "formats"


def load(fixtures, name, **kw):
    return load_questions(fixtures / FORMATS_DIR / name, **kw)


def test_medqa_original_jsonl(fixtures):
    qs = load(fixtures, "medqa_us_test.jsonl")
    assert qs.report.format == "medqa"
    assert [q.id for q in qs] == ["medqa_us_test_0", "medqa_us_test_1"]
    assert qs[0].answer == "D" and qs[0].answer_text == "Nitrofurantoin"
    assert list(qs[1].options) == ["A", "B", "C", "D", "E"]
    assert qs[0].metadata == {"meta_info": "step2&3"}
    assert qs[0].task_type == "multiple_choice" and qs[0].domain == "medical_exam"


def test_medmcqa_original_one_based(fixtures):
    qs = load(fixtures, "medmcqa_dev.json")  # the original release: JSON lines, cop 1-4
    assert qs.report.format == "medmcqa"
    assert [q.answer for q in qs] == ["A", "D"]
    assert qs[0].id == "45258d3d-b974-44dd-a161-c3fccbdadd88"
    assert qs[1].options["D"] == "Ophthalmic artery"
    assert qs[1].metadata["subject_name"] == "Anatomy"


def test_medmcqa_huggingface_zero_based(fixtures):
    qs = load(fixtures, "medmcqa_hf.jsonl")  # cop 0 present -> 0-3
    assert [q.answer for q in qs] == ["C", "A"]


def test_medmcqa_explicit_base(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2}) + "\n")
    assert load_questions(p, format="medmcqa-0")[0].answer == "C"
    assert load_questions(p, format="medmcqa-1")[0].answer == "B"
    assert load_questions(p)[0].answer == "B"  # ambiguous: the original 1-4 release


def test_pubmedqa_ori_pqal(fixtures):
    qs = load(fixtures, "ori_pqal.json")
    assert qs.report.format == "pubmedqa"
    assert [q.id for q in qs] == ["pubmedqa_21645374", "pubmedqa_16418930"]
    assert [q.answer for q in qs] == ["A", "B"]
    assert qs[0].options == {"A": "yes", "B": "no", "C": "maybe"}
    assert qs[0].context.startswith("BACKGROUND: Programmed cell death")
    assert "\nRESULTS: The following paper" in qs[0].context
    assert qs[0].metadata["year"] == "2011" and qs[0].metadata["pmid"] == "21645374"


def test_mmlu_csv(fixtures):
    qs = load(fixtures, "anatomy_test.csv")
    assert qs.report.format == "mmlu"
    assert [q.id for q in qs] == ["anatomy_test_0", "anatomy_test_1"]
    assert qs[0].options["C"] == "paralysis of the facial muscles, loss of taste and lacrimation."
    assert [q.answer for q in qs] == ["A", "B"]
    assert qs[0].metadata == {"subject": "anatomy"} and qs[0].source == "MMLU anatomy"


def test_headqa_json(fixtures):
    qs = load(fixtures, "HEAD_EN_dev.json")
    assert qs.report.format == "headqa"
    assert [q.id for q in qs] == ["headqa_en_Cuaderno_2015_1_B_1", "headqa_en_Cuaderno_2015_1_B_2"]
    assert qs[0].answer == "D" and qs[0].answer_text == "The Nernst equation."
    # answers are ordered by aid, whatever their order in the file
    assert qs[1].options == {"A": "Leucine.", "B": "Tyrosine.", "C": "Valine.", "D": "Proline.", "E": "Serine."}
    assert qs[1].answer == "B"
    assert qs[0].metadata["category"] == "biology" and qs[0].metadata["year"] == "2015"


def test_headqa_flat_records(tmp_path):
    rec = {"qid": 7, "qtext": "Q?", "ra": 1, "answers": [{"aid": 1, "atext": "x"}, {"aid": 2, "atext": "y"}],
           "name": "Cuaderno_2013", "category": "medicine", "year": "2013"}
    p = tmp_path / "headqa.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    q = load_questions(p)[0]
    assert (q.id, q.answer, q.metadata["exam"]) == ("headqa_Cuaderno_2013_7", "A", "Cuaderno_2013")


def test_meds3_conversations(fixtures):
    qs = load(fixtures, "MedQA.json")
    assert qs.report.format == "meds3_conversations"
    mc, open_q = qs
    assert mc.id == "MedQA_0" and mc.answer == "B"
    assert mc.question.endswith("Which of the following is the most appropriate treatment?")
    assert mc.options == {"A": "Erythromycin ointment", "B": "Ketotifen eye drops", "C": "Warm compresses",
                          "D": "Fluorometholone eye drops", "E": "Latanoprost eye drops"}
    assert mc.metadata["eval"] == {"answer": "B", "type": "step2&3"}
    assert open_q.options == {} and open_q.answer == "10 mg" and open_q.task_type == "span"
    assert open_q.metadata["reference_response"].endswith("The answer is 10 mg.")


def test_normalized_jsonl(fixtures):
    qs = load(fixtures, "normalized.jsonl")
    assert qs.report.format == "meds3"
    pub, drug, calc = qs
    assert pub.context == "BACKGROUND: Aspirin was given." and pub.answer == "A"
    assert pub.metadata["license"] == "MIT" and pub.domain == "biomedical_literature"
    assert (drug.task_type, drug.answer) == ("span", "10 mg")
    assert (calc.task_type, calc.metadata["unit"], calc.domain) == ("numeric", "kg/m^2", "clinical_calculation")


def test_save_and_load_round_trip(fixtures, tmp_path):
    for name in ["medqa_us_test.jsonl", "ori_pqal.json", "anatomy_test.csv", "HEAD_EN_dev.json", "MedQA.json",
                 "normalized.jsonl", "medmcqa_dev.json"]:
        original = load(fixtures, name)
        out = save_questions(tmp_path / f"{name}.jsonl", original)
        again = load_questions(out)
        assert again.report.format == "meds3"
        assert [q.to_dict() for q in again] == [q.to_dict() for q in original], name


def test_question_dict_round_trip():
    q = MedQuestion(id="x", question="q", options={"B": "b", "A": "a"}, answer="A", metadata={"k": [1, 2]})
    assert MedQuestion.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    assert list(MedQuestion.from_dict(q.to_dict()).options) == ["B", "A"]


def test_explicit_format_and_unknown_format(fixtures):
    qs = load(fixtures, "anatomy_test.csv", format="mmlu")
    assert len(qs) == 2
    with pytest.raises(ValueError, match="unknown format 'nope'"):
        load(fixtures, "anatomy_test.csv", format="nope")


@pytest.mark.shared_data
def test_every_shared_data_file_loads(shared_data):
    files = sorted(shared_data.rglob("*.jsonl"))
    assert files, "no data files found"
    for path in files:
        qs = load_questions(path)  # on_error="raise": any malformed record fails the test
        assert len(qs) > 0, path
        assert len({q.id for q in qs}) == len(qs)
        for q in qs:
            if q.options:
                assert q.answer in q.options, (path, q.id)


@pytest.mark.shared_data
def test_shared_pubmedqa_has_context(shared_data):
    qs = load_questions(shared_data / "eval" / "pubmedqa_test500.jsonl")
    assert len(qs) == 500
    assert all(q.context for q in qs)
    assert {q.answer_text for q in qs} == {"yes", "no", "maybe"}
