"""Generated clinical-calculation questions: reproducible, covered, and exactly checkable."""

from __future__ import annotations

import hashlib
import inspect
import json
import re

import pytest

from meds3.data import calculators as c
from meds3.data.calc_specs import SPECS, CalcSpec, InputField
from meds3.data.question import MedQuestion
from meds3.data.seedgen import CALCULATOR_NAMES, LEVELS, generate_calc_file, generate_calc_questions


@pytest.fixture(scope="module")
def questions() -> list[MedQuestion]:
    return generate_calc_questions(500, seed=7)


def test_same_seed_same_output_different_seed_different():
    first = [q.to_dict() for q in generate_calc_questions(60, seed=1)]
    again = [q.to_dict() for q in generate_calc_questions(60, seed=1)]
    other = [q.to_dict() for q in generate_calc_questions(60, seed=2)]
    assert first == again
    assert first != other
    assert sum(a["question"] != b["question"] for a, b in zip(first, other)) > 50


def test_longer_run_extends_shorter_one():
    short = [q.to_dict() for q in generate_calc_questions(25, seed=4)]
    long = [q.to_dict() for q in generate_calc_questions(80, seed=4)]
    assert long[:25] == short


def test_every_level_and_calculator_appears(questions):
    pairs = {(q.metadata["calculator"], q.metadata["level"]) for q in questions}
    assert {name for name, _ in pairs} == set(CALCULATOR_NAMES)
    assert {level for _, level in pairs} == set(LEVELS)
    assert len(pairs) == len(CALCULATOR_NAMES) * len(LEVELS)


def test_every_registered_calculator_can_be_generated():
    # The seed-set config validates names against the registry, so the two must agree.
    registered = {n for n in c.CALCULATORS if not n.startswith("_test")}
    assert set(CALCULATOR_NAMES) == registered


def test_record_shape(questions):
    for q in questions:
        m = q.metadata
        assert (q.task_type, q.domain, q.source, q.options) == (
            "numeric", "clinical_calculation", "meds3-clinical-calc", {})
        assert m["unit"] == c.get_calculator(m["calculator"]).unit
        assert isinstance(m["tolerance"], float) and isinstance(m["abs_tolerance"], float)
        assert isinstance(m["inputs"], dict) and m["inputs"]
        assert m["level"] in LEVELS
        json.dumps(q.to_dict(), ensure_ascii=False)  # plain JSON data only


def test_ids_unique_and_stable(questions):
    ids = [q.id for q in questions]
    assert len(set(ids)) == len(ids)
    for i, q in enumerate(questions):
        assert q.id == f"calc_7_{i:05d}_{q.metadata['calculator']}"


def test_answer_equals_recomputation_from_inputs(questions):
    for q in questions:
        m = q.metadata
        args = c.to_calculator_args(m["calculator"], m["inputs"])  # converts given units
        value = c.calculate(m["calculator"], **args)
        expected = f"{value:.{m['decimals']}f}"
        assert q.answer in (expected, expected.replace("-", "")), q.id
        assert float(q.answer) == pytest.approx(value, abs=0.5 * 10 ** -m["decimals"] + 1e-9)


def test_recomputation_by_hand_for_converted_bmi(questions):
    # Independent of to_calculator_args: convert with the named functions.
    converted = [q for q in questions if q.metadata["calculator"] == "bmi"
                 and "weight_lb" in q.metadata["inputs"] and "height_in" in q.metadata["inputs"]]
    assert converted
    for q in converted:
        inputs = q.metadata["inputs"]
        value = c.bmi(c.lb_to_kg(inputs["weight_lb"]), c.in_to_cm(inputs["height_in"]) / 100)
        assert q.answer == f"{value:.2f}"


def test_cha2ds2_vasc_answers_are_integers(questions):
    scores = [q for q in questions if q.metadata["calculator"] == "cha2ds2_vasc"]
    for q in scores:
        assert re.fullmatch(r"\d", q.answer)
        assert int(q.answer) == c.cha2ds2_vasc(**q.metadata["inputs"])
        assert q.metadata["tolerance"] == 0.0 and q.metadata["abs_tolerance"] == 0.0
        assert q.metadata["range"] == [float(q.answer), float(q.answer)]
        assert q.metadata["unit"] == "points"


def test_range_contains_gold_and_matches_tolerances(questions):
    for q in questions:
        m, gold = q.metadata, float(q.answer)
        lo, hi = m["range"]
        assert lo <= gold <= hi
        width = max(m["abs_tolerance"], m["tolerance"] * abs(gold))
        assert lo == pytest.approx(gold - width, abs=1e-6)
        assert hi == pytest.approx(gold + width, abs=1e-6)
        if m["calculator"] != "cha2ds2_vasc":
            assert 0 < m["tolerance"] <= 0.02
            assert m["abs_tolerance"] == pytest.approx(0.5 * 10 ** -m["decimals"])


def test_solution_format(questions):
    for q in questions:
        sol = q.metadata["solution"]
        steps = sol.split("\n\n")
        assert all(s.startswith(f"Step {k}: ") for k, s in enumerate(steps, 1)), q.id
        assert sol.endswith(f"The answer is {q.answer} {q.metadata['unit']}."), q.id
        assert len(steps) >= 2


def test_question_asks_for_unit_and_rounding(questions):
    for q in questions:
        unit = q.metadata["unit"]
        assert f"Give the answer in {unit}, " in q.question
        assert re.search(r"rounded to (one|two) decimal places?|rounded to the nearest whole "
                         r"number|as a whole number\.$", q.question), q.id


def test_levels_differ_as_documented(questions):
    for q in questions:
        m = q.metadata
        params = set(c.get_calculator(m["calculator"]).params)
        converted = set(m["inputs"]) - params  # inputs given in a unit other than the formula's
        if m["level"] == "easy":
            assert not converted, q.id
        if m["level"] == "medium" and m["calculator"] in ("bmi", "creatinine_clearance",
                                                          "corrected_calcium", "aa_gradient"):
            assert converted, q.id
        if m["level"] == "hard":
            assert "not needed" in m["solution"] or "Not part of the score" in m["solution"]
            assert len(q.question) > 200


def test_conversion_shown_in_solution(questions):
    q = next(q for q in questions if "creatinine_umol_l" in q.metadata["inputs"]
             and q.metadata["calculator"] == "creatinine_clearance")
    umol = q.metadata["inputs"]["creatinine_umol_l"]
    assert f"{umol} µmol/L ÷ 88.4 = " in q.metadata["solution"]
    assert f"{umol} µmol/L" in q.question


def test_filters_and_errors():
    qs = generate_calc_questions(12, seed=0, levels=("hard",), calculators=["qtc_bazett", "bmi"])
    assert [q.metadata["calculator"] for q in qs[:4]] == ["qtc_bazett", "bmi"] * 2
    assert {q.metadata["level"] for q in qs} == {"hard"}
    assert generate_calc_questions(0) == []
    with pytest.raises(ValueError, match="levels"):
        generate_calc_questions(3, levels=("expert",))
    with pytest.raises(ValueError, match="unknown calculators"):
        generate_calc_questions(3, calculators=["meld_na"])
    with pytest.raises(ValueError, match="n must be"):
        generate_calc_questions(-1)


def test_file_round_trip(tmp_path):
    path = tmp_path / "sub" / "calc.jsonl"
    assert generate_calc_file(path, 40, seed=3) == path
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = [q.to_dict() for q in generate_calc_questions(40, seed=3)]
    assert [MedQuestion.from_dict(json.loads(line)).to_dict() for line in lines] == expected
    assert "µmol/L" in path.read_text(encoding="utf-8") or "°" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["calc.jsonl"]  # no temp file left behind
    generate_calc_file(path, 5, seed=3)  # overwrite in place
    assert len(path.read_text(encoding="utf-8").splitlines()) == 5


def test_multiple_choice_seeds_have_exactly_one_option_in_range():
    import random

    from meds3.data.seeds import SeedGenConfig, generate_seeds, to_multiple_choice
    from meds3.verify import verify

    open_qs = generate_seeds(SeedGenConfig(n=60, seed=3))
    mc = generate_seeds(SeedGenConfig(n=60, seed=3, choices=4))
    for o, q in zip(open_qs, mc):
        assert q.id == o.id + "_mc" and q.task_type == "multiple_choice" and list(q.options) == list("ABCD")
        lo, hi = o.metadata["range"]
        in_range = [k for k, v in q.options.items() if lo <= float(v.split()[0]) <= hi]
        assert in_range == [q.answer]
        assert q.options[q.answer].split()[0] == o.answer == q.metadata["numeric_answer"]
        assert len({v for v in q.options.values()}) == 4
        assert verify(q.metadata["solution"], q).correct is True
    with pytest.raises(ValueError, match="not a generated numeric"):
        to_multiple_choice(mc[0], 4, random.Random(0))


def test_choices_config_is_validated():
    from meds3.data.seeds import SeedGenConfig

    with pytest.raises(ValueError, match="choices"):
        SeedGenConfig(choices=1)


# sha256 of ``generate_calc_file(path, 180, seed=0)``, written before the specs became data; any change
# to a spec, a draw or a phrase changes it. Regenerate it only for a deliberate change of the seed set.
SEED0_180_SHA256 = "b7f9fc74cc6c67a31d71f6a939748f58fc0f8c9d0a9be382e5242ded3ccfda1b"


def test_generated_file_is_pinned(tmp_path, fixtures):
    path = generate_calc_file(tmp_path / "calc.jsonl", 180, seed=0)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SEED0_180_SHA256
    # Three whole records, readable when the hash moves: a converted Cockcroft-Gault (medium),
    # a BMI vignette (hard) and a CHA2DS2-VASc narrative with noise (hard).
    lines = path.read_text(encoding="utf-8").splitlines()
    pinned = (fixtures / "seedgen" / "seed0_pinned.jsonl").read_text(encoding="utf-8").splitlines()
    assert [lines[i] for i in (23, 36, 53)] == pinned
    score = json.loads(pinned[2])
    assert score["answer"] == "5" and score["metadata"]["solution"].endswith(
        "Step 3: Total = 2 + 1 + 0 + 1 + 1 + 0 + 0 = 5.\n\nStep 4: The CHA2DS2-VASc score is 5 points. "
        "The answer is 5 points.")


def test_specs_cover_every_required_argument():
    assert tuple(SPECS) == CALCULATOR_NAMES
    for name, spec in SPECS.items():
        params = inspect.signature(c.get_calculator(name).func).parameters
        required = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
        if spec.build is None:  # the generic question draws exactly its fields
            assert required <= {f.arg for f in spec.fields} <= set(params), name


def test_only_the_score_spec_is_exact():
    assert [name for name, spec in SPECS.items() if spec.exact_score] == ["cha2ds2_vasc"]
    score = SPECS["cha2ds2_vasc"]
    assert (score.abs_tol, score.rel_tol, score.rounding) == (0.0, 0.0, "as a whole number")
    assert (SPECS["bmi"].abs_tol, SPECS["bmi"].rounding) == (0.005, "rounded to two decimal places")


def test_spec_errors_name_the_calculator():
    def work(a, r):
        return []

    with pytest.raises(ValueError, match=r"spec 'bmi': fields \['weight_lb'\] are not arguments"):
        CalcSpec(calculator="bmi", ask="x", fields=(InputField(arg="weight_lb", label="weight"),), work=work)
    with pytest.raises(ValueError, match="unknown calculator 'meld_na'"):
        CalcSpec(calculator="meld_na", ask="x", work=work)
    with pytest.raises(ValueError, match="spec 'bmi': decimals must be one of"):
        CalcSpec(calculator="bmi", ask="x", work=work, decimals=3)
    with pytest.raises(ValueError, match="spec 'cha2ds2_vasc': an exact score takes decimals=0"):
        CalcSpec(calculator="cha2ds2_vasc", ask="x", work=work, exact_score=True)


def test_adding_a_calculator_is_one_spec():
    # A registered formula plus one CalcSpec is all the generator needs.
    @c.register("_test_shock_index", unit="bpm/mmHg", title="shock index")
    def shock_index(heart_rate_bpm: float, sbp_mmhg: float) -> float:
        return heart_rate_bpm / sbp_mmhg

    try:
        SPECS["_test_shock_index"] = CalcSpec(
            calculator="_test_shock_index", ask="Calculate the shock index (HR / SBP)",
            fields=(InputField(arg="heart_rate_bpm", label="heart rate", unit="beats/min", lo=50, hi=140),
                    InputField(arg="sbp_mmhg", label="systolic blood pressure", unit="mmHg", lo=70, hi=160,
                               alts=(SPECS["mean_arterial_pressure"].fields[0].alts))),
            work=lambda a, r: [f"{a['heart_rate_bpm']} / {a['sbp_mmhg']:.4g} = {r:.4f}."])
        qs = generate_calc_questions(6, seed=5, calculators=["_test_shock_index"])
        assert [q.metadata["level"] for q in qs] == ["easy", "medium", "hard", "easy", "medium", "hard"]
        for q in qs:
            args = c.to_calculator_args("_test_shock_index", q.metadata["inputs"])
            assert q.answer == f"{shock_index(**args):.2f}"
            assert q.question.endswith("Give the answer in bpm/mmHg, rounded to two decimal places.")
        assert "sbp_kpa" in qs[1].metadata["inputs"]  # medium: the one convertible field is converted
    finally:
        SPECS.pop("_test_shock_index", None)
        del c.CALCULATORS["_test_shock_index"]
