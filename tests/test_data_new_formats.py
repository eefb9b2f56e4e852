"""Loaders for BioMRC, DDXPlus and HealthFact/PUBHEALTH (and SEER's normalized shape): fixtures
shaped like each source's records, exact fields, file:line errors, and format detection that
neither misses the new formats nor takes existing formats' files."""

import json

import pytest

from meds3.data import DataError, load_questions
from meds3.data.formats import detect_format
from meds3.data.loaders import read_records
from meds3.verify import verify

FORMATS_DIR = "formats"


def path_of(fixtures, name):
    return fixtures / FORMATS_DIR / name


# ---------------------------------------------------------------- BioMRC

def test_biomrc(fixtures):
    path = path_of(fixtures, "biomrc_test_small.jsonl")
    qs = load_questions(path, on_error="skip")
    assert qs.report.format == "biomrc"
    first, second = qs
    assert first.id == "biomrc_test_small_0" and first.task_type == "multiple_choice"
    assert first.options == {"A": "@entity1 (atrial fibrillation)", "B": "@entity2 (coronary artery bypass)",
                             "C": "@entity3 (patients)", "D": "@entity4 (amiodarone)"}
    assert first.answer == "A" and first.domain == "biomedical_literature" and first.source == "BioMRC"
    assert first.question.startswith("Title: @entity4 for the prevention of XXXX in @entity3 with @entity2\n")
    assert first.context.startswith("BACKGROUND: @entity1 is a common complication")
    assert second.answer == "A" and list(second.options) == ["A", "B", "C"]
    assert verify("The answer is (A).", second).correct is True
    [skipped] = qs.report.skipped
    assert (skipped.where, skipped.field) == ("line 3", "answer")


def test_biomrc_malformed_record_names_file_and_line(fixtures):
    path = path_of(fixtures, "biomrc_test_small.jsonl")
    with pytest.raises(DataError) as info:
        load_questions(path)
    assert str(info.value) == (f"{path}:line 3: field 'answer' is @entity9, which is not in entities_list "
                               "(@entity2, @entity3)")


def test_biomrc_answer_given_as_tag_and_missing_placeholder(tmp_path):
    record = {"abstract": "@entity1 and @entity2 .", "title": "XXXX with @entity2",
              "entities_list": ["@entity1 :: ('UMLS:C1', ['aspirin'])", "@entity2 :: ('UMLS:C2', ['pain'])"],
              "answer": "@entity1"}
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "title": "no blank"}) + "\n")
    qs = load_questions(path, on_error="skip")
    assert qs[0].answer == "A" and qs[0].options["B"] == "@entity2 (pain)"
    assert [(s.where, s.field) for s in qs.report.skipped] == [("line 2", "title")]


# ---------------------------------------------------------------- DDXPlus

def test_ddxplus_jsonl(fixtures):
    path = path_of(fixtures, "ddxplus_test.jsonl")
    qs = load_questions(path, on_error="skip")
    assert qs.report.format == "ddxplus"
    bronchitis, urti = qs
    assert bronchitis.options == {"A": "Bronchitis", "B": "Pneumonia", "C": "URTI", "D": "Bronchiectasis"}
    assert bronchitis.answer == "A" and bronchitis.task_type == "multiple_choice"
    assert bronchitis.question == ("A 49-year-old male patient. Initial evidence: E_201. Evidences: E_48, E_50, "
                                   "E_53, E_54_@_V_161, E_55_@_V_89, E_201.\nWhat is the most likely diagnosis?")
    assert bronchitis.metadata["evidences"][3] == "E_54_@_V_161" and bronchitis.metadata["sex"] == "male"
    # the gold missing from the differential is added as the last option
    assert urti.options == {"A": "Viral pharyngitis", "B": "Bronchitis", "C": "URTI"} and urti.answer == "C"
    [skipped] = qs.report.skipped
    assert (skipped.where, skipped.field) == ("line 3", "DIFFERENTIAL_DIAGNOSIS")


def test_ddxplus_malformed_record_names_file_and_line(fixtures):
    path = path_of(fixtures, "ddxplus_test.jsonl")
    with pytest.raises(DataError, match=rf"^{path}:line 3: field 'DIFFERENTIAL_DIAGNOSIS' is not a list literal"):
        load_questions(path)


def test_ddxplus_release_csv(fixtures):
    path = path_of(fixtures, "release_test_patients.csv")
    qs = load_questions(path, on_error="skip")
    assert qs.report.format == "ddxplus"
    urti, gerd = qs
    assert urti.id == "release_test_patients_0"  # the header row is no record
    assert urti.options == {"A": "Bronchitis", "B": "Pneumonia", "C": "URTI"} and urti.answer == "C"
    assert urti.metadata["evidences"] == ["E_48", "E_50", "E_54_@_V_161"] and urti.metadata["age"] == "18"
    assert gerd.answer == "B"
    [skipped] = qs.report.skipped
    assert skipped.where == "line 4" and "6" in skipped.reason
    with pytest.raises(DataError, match=rf"^{path}:line 4: has 5 columns but the header has 6"):
        load_questions(path)


def test_ddxplus_caps_options_at_26_keeping_the_gold(tmp_path):
    ddx = [[f"Pathology {i}", 0.5 - i / 100] for i in range(30)]
    record = {"AGE": 40, "SEX": "F", "PATHOLOGY": "Pathology 29", "EVIDENCES": [], "INITIAL_EVIDENCE": "E_1",
              "DIFFERENTIAL_DIAGNOSIS": ddx}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n")
    [q] = load_questions(path)
    assert len(q.options) == 26 and q.answer == "Z" and q.answer_text == "Pathology 29"


# ---------------------------------------------------------------- HealthFact / PUBHEALTH

def test_pubhealth(fixtures):
    path = path_of(fixtures, "pubhealth_test.jsonl")
    qs = load_questions(path, on_error="skip")
    assert qs.report.format == "healthfact"
    clinton, mammo = qs
    assert clinton.id == "15661" and clinton.answer == "B" and clinton.answer_text == "false"
    assert mammo.answer == "C" and mammo.answer_text == "mixture"
    assert clinton.options == {"A": "true", "B": "false", "C": "mixture", "D": "unproven"}
    assert clinton.context.startswith("Gingrich said") and clinton.domain == "health_fact_checking"
    assert clinton.question.startswith("Claim: The money the Clinton Foundation")
    assert clinton.metadata["fact_checkers"] == "Katie Sanders"
    assert verify("The claim is false. The answer is B.", clinton).correct is True
    with pytest.raises(DataError, match=rf"^{path}:line 3: field 'label' is 'mostly-true', expected one of true, "
                                        "false, mixture, unproven"):
        load_questions(path)


def test_health_fact_hugging_face_class_index(fixtures, tmp_path):
    qs = load_questions(path_of(fixtures, "health_fact_hf.jsonl"))
    assert [q.answer_text for q in qs] == ["false", "unproven"]
    path = tmp_path / "hf.jsonl"
    path.write_text(json.dumps({"claim_id": "3", "claim": "c", "explanation": "e", "label": -1}) + "\n")
    with pytest.raises(DataError, match=r"hf.jsonl:line 1: field 'label' is -1, expected a class index 0-3"):
        load_questions(path)


def test_format_aliases(fixtures, tmp_path):
    assert load_questions(path_of(fixtures, "pubhealth_test.jsonl"), format="pubhealth",
                          on_error="skip").report.format == "healthfact"
    seer = tmp_path / "seer.jsonl"
    seer.write_text(json.dumps({"id": "seer_0", "question": "Stage?", "options": {"A": "I", "B": "II"},
                                "answer": "B", "source": "SEER"}) + "\n")
    qs = load_questions(seer, format="seer")
    assert qs.report.format == "meds3" and qs[0].answer_text == "II"


# ---------------------------------------------------------------- detection

NEW = {"biomrc_test_small.jsonl": "biomrc", "ddxplus_test.jsonl": "ddxplus", "release_test_patients.csv": "ddxplus",
       "pubhealth_test.jsonl": "healthfact", "health_fact_hf.jsonl": "healthfact"}
EXISTING = {"medqa_us_test.jsonl": "medqa", "medmcqa_dev.json": "medmcqa", "medmcqa_hf.jsonl": "medmcqa",
            "ori_pqal.json": "pubmedqa", "anatomy_test.csv": "mmlu", "HEAD_EN_dev.json": "headqa",
            "MedQA.json": "meds3_conversations", "MedQA_medsss.json": "meds3_conversations",
            "normalized.jsonl": "meds3"}


@pytest.mark.parametrize("name, fmt", sorted({**NEW, **EXISTING}.items()))
def test_detection(fixtures, name, fmt):
    assert load_questions(path_of(fixtures, name), on_error="skip").report.format == fmt


def test_new_detectors_take_no_existing_record(fixtures):
    for name in EXISTING:
        _, records = read_records(path_of(fixtures, name))
        for raw in records:
            if raw.error is None:
                assert detect_format(raw.value) not in {"biomrc", "ddxplus", "healthfact"}, name


@pytest.mark.shared_data
def test_shared_files_keep_their_formats(shared_data):
    for path in sorted(shared_data.rglob("*.jsonl")):
        assert load_questions(path).report.format == "meds3", path
