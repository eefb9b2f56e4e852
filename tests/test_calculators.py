"""Clinical calculators against published or widely reproduced worked examples.

Each case names where its numbers come from. "Hand-computed" means the numbers were worked
from the cited formula here, not copied from a published example.
"""

from __future__ import annotations

import math

import pytest

from meds3.data import calculators as c

# --- BMI -------------------------------------------------------------------------------------


def test_bmi_cdc_metric_example():
    # CDC "About Adult BMI" example, reproduced verbatim at
    # americanobesity.org/adultMeasurement.htm:
    # weight 68 kg, height 165 cm (1.65 m): 68 / 1.65^2 = 24.98.
    assert c.bmi(68, 1.65) == pytest.approx(24.98, abs=0.005)
    assert c.bmi(68, 1.65) == pytest.approx(68 / 2.7225, rel=1e-12)


def test_bmi_cdc_imperial_example_via_exact_conversions():
    # Same CDC page: 150 lb, 5'5" (65 in): [150 / 65^2] x 703 = 24.96. Exact SI conversion
    # (0.45359237 kg/lb, 2.54 cm/in) must agree with the 703 shortcut to the published 2 decimals.
    value = c.bmi(c.lb_to_kg(150), c.in_to_cm(65) / 100)
    assert value == pytest.approx(24.96, abs=0.005)
    assert value == pytest.approx(68.0388555 / 1.651**2, rel=1e-9)


# --- mean arterial pressure ------------------------------------------------------------------


def test_map_wikipedia_example():
    # Wikipedia "Mean arterial pressure", Basic calculation: DBP 70 mmHg, SBP 100 mmHg -> MAP 80.
    assert c.mean_arterial_pressure(100, 70) == pytest.approx(80.0, abs=1e-12)


def test_map_is_dbp_plus_third_of_pulse_pressure():
    # DeMers & Wachs, "Physiology, Mean Arterial Pressure", StatPearls: MAP = DP + 1/3 (SP - DP).
    # Hand-computed for 120/80: 80 + 40/3 = 93.333...
    assert c.mean_arterial_pressure(120, 80) == pytest.approx(80 + 40 / 3, rel=1e-12)


# --- anion gap -------------------------------------------------------------------------------


def test_anion_gap_usmle_example():
    # Reproduced USMLE one-liner (vimatics.com/usmle/OneLiner_987): [138 - (103 + 8)] = 27.
    assert c.anion_gap(138, 103, 8) == pytest.approx(27.0, abs=1e-12)


def test_anion_gap_with_potassium():
    # Variant AG = Na + K - Cl - HCO3 as stated at globalrph.com/anion_gap.htm; hand-computed
    # with K 4.0 added to the example above: 27 + 4 = 31.
    assert c.anion_gap(138, 103, 8, k_meq_l=4.0) == pytest.approx(31.0, abs=1e-12)


# --- corrected calcium -----------------------------------------------------------------------


def test_corrected_calcium_payne_1973_original_formula():
    # Payne, Little, Williams & Milner, BMJ 1973;4:643 (abstract, PubMed 4758544):
    # "Adjusted calcium = calcium - albumin + 4.0" (mg/100 ml, g/100 ml), i.e. slope 1.0.
    # Hand-computed: 8.0 - 2.5 + 4.0 = 9.5.
    assert c.corrected_calcium(8.0, 2.5, slope=1.0) == pytest.approx(9.5, abs=1e-12)


def test_corrected_calcium_conventional_0_8_example():
    # Widely used 0.8 form (Ca + 0.8 x (4.0 - albumin)); worked example reproduced at
    # theprimecalculator.com/.../corrected-calcium/formula: Ca 8.5 mg/dL, albumin 3.0 -> 9.3.
    assert c.corrected_calcium(8.5, 3.0) == pytest.approx(9.3, abs=1e-12)


def test_corrected_calcium_si_example():
    # SI form "corrected = measured + (40 - albumin) x 0.02" (GPnotebook, calculation of calcium
    # concentration); worked example at theguidewire.net: 1.83 + 0.02 x (40 - 26) = 2.11 mmol/L.
    assert c.corrected_calcium_si(1.83, 26) == pytest.approx(2.11, abs=1e-12)


def test_corrected_calcium_si_and_conventional_agree():
    # 0.02 mmol/L per g/L = 0.8016 mg/dL per g/dL: the two forms agree within 0.1 %.
    conv = c.corrected_calcium(8.5, 3.0)
    si = c.corrected_calcium_si(c.calcium_mg_dl_to_mmol_l(8.5), 30)
    assert c.calcium_mmol_l_to_mg_dl(si) == pytest.approx(conv, rel=1e-3)


# --- Cockcroft-Gault -------------------------------------------------------------------------
# Formula: Cockcroft & Gault, Nephron 1976;16:31-41. The worked examples below are from
# educational calculator pages that reproduce the formula (the 1976 paper was not checked for
# a worked example).


@pytest.mark.parametrize("age, weight, scr, sex, published, source", [
    # droracle.ai/articles/797449: 70-year-old male, 75 kg, SCr 1.0 -> 5250 / 72 = 72.9.
    (70, 75, 1.0, "male", 72.9, "droracle"),
    # superglobalcalculator.com/formulas/health/creatinine-clearance, example 1 -> 74.1.
    (60, 80, 1.2, "male", 74.1, "superglobalcalculator health"),
    # superglobalcalculator.com/formulas/pharmacology/creatinine-clearance, example 2:
    # female, 45 y, 60 kg, SCr 0.9 -> [5700 / 64.8] x 0.85 = 74.8.
    (45, 60, 0.9, "female", 74.8, "superglobalcalculator pharmacology"),
    # webcalcsys.pages.dev/biology/creatinine-clearance: 50 y male, 70 kg, SCr 1.0 -> 87.5.
    (50, 70, 1.0, "male", 87.5, "webcalcsys"),
])
def test_cockcroft_gault_worked_examples(age, weight, scr, sex, published, source):
    value = c.creatinine_clearance_cockcroft_gault(age, weight, scr, sex)
    assert value == pytest.approx(published, abs=0.05), source


def test_cockcroft_gault_exact_and_female_factor():
    male = c.creatinine_clearance_cockcroft_gault(45, 60, 0.9, "male")
    assert male == pytest.approx(5700 / 64.8, rel=1e-12)
    female = c.creatinine_clearance_cockcroft_gault(45, 60, 0.9, "Female")
    assert female == pytest.approx(0.85 * male)


def test_cockcroft_gault_si_creatinine_matches_0_814_form():
    # SI form (140 - age) x weight x F / (0.814 x SCr umol/L), stated at proreckoner.com
    # (72 / 88.4 = 0.8145): converting with 88.4 must agree within 0.1 %.
    scr = c.creatinine_umol_l_to_mg_dl(140)
    via_conversion = c.creatinine_clearance_cockcroft_gault(82, 56, scr, "female")
    assert via_conversion == pytest.approx((140 - 82) * 56 * 0.85 / (0.814 * 140), rel=1e-3)


# --- QTc Bazett ------------------------------------------------------------------------------
# Formula: Bazett, Heart 1920;7:353 (QTc = QT / sqrt(RR)).


def test_qtc_bazett_at_60_bpm_is_unchanged():
    # StethoPrep physiology MCQ 060 (citing Guyton & Hall 14th ed.): QT 480 ms at 60 bpm,
    # RR = 1.0 s -> QTc = 480 ms.
    assert c.qtc_bazett(480, 60) == pytest.approx(480.0, abs=1e-9)


def test_qtc_bazett_worked_example_64_bpm():
    # StethoPrep physiology MCQ 073: QT 480 ms, HR 64 (RR 0.9375 s) -> QTc "≈ 496 ms"
    # (their intermediate rounding gives 495.3; exact value 480 / sqrt(0.9375) = 495.74).
    value = c.qtc_bazett(480, 64)
    assert value == pytest.approx(496, abs=0.5)
    assert value == pytest.approx(480 / math.sqrt(0.9375), rel=1e-12)
    assert c.rr_interval_s(64) == pytest.approx(0.9375, rel=1e-12)


# --- CHA2DS2-VASc ----------------------------------------------------------------------------
# Point definitions: Lip et al., Chest 2010;137:263-272, as tabulated in the AHA/ASA 2014
# stroke-prevention guideline (Meschia et al., Stroke 2014;45:3754, Table 3, PMC5020564):
# CHF 1, hypertension 1, age 65-74 1 / >=75 2, diabetes 1, stroke/TIA 2, vascular disease 1,
# female sex 1; range 0-9. The patients below are hand-scored from those definitions.


def test_cha2ds2_vasc_minimum_and_maximum():
    assert c.cha2ds2_vasc(50, "male") == 0
    assert c.cha2ds2_vasc(80, "female", True, True, True, True, True) == 9


def test_cha2ds2_vasc_worked_patient():
    # 72-year-old woman with hypertension and diabetes: age 1 + female 1 + HTN 1 + DM 1 = 4.
    assert c.cha2ds2_vasc(72, "female", hypertension=True, diabetes=True) == 4
    # 76-year-old man with prior TIA and MI: age 2 + stroke/TIA 2 + vascular 1 = 5.
    assert c.cha2ds2_vasc(76, "male", stroke_tia=True, vascular_disease=True) == 5


@pytest.mark.parametrize("age, points", [(64, 0), (65, 1), (74, 1), (75, 2), (90, 2)])
def test_cha2ds2_vasc_age_bands(age, points):
    assert c.cha2ds2_vasc(age, "male") == points
    assert isinstance(c.cha2ds2_vasc(age, "male"), int)


# --- more calculators ------------------------------------------------------------------------


def test_ideal_body_weight_devine():
    # Devine, Drug Intell Clin Pharm 1974;8:650: 50 kg (men) / 45.5 kg (women) + 2.3 kg per inch
    # over 5 ft (formula as quoted at boomer.org/c/php/pk2701a.php). Hand-computed.
    assert c.ideal_body_weight_devine(70, "male") == pytest.approx(73.0, abs=1e-9)
    assert c.ideal_body_weight_devine(65, "female") == pytest.approx(57.0, abs=1e-9)
    assert c.ideal_body_weight_devine(60, "male") == pytest.approx(50.0, abs=1e-12)


def test_bsa_mosteller():
    # Mosteller, N Engl J Med 1987;317:1098: sqrt(height cm x weight kg / 3600).
    # Worked example reproduced at omnicalc (health/body-surface-area-calculator):
    # 175 cm, 70 kg -> sqrt(3.4028) = 1.845 m^2.
    assert c.bsa_mosteller(175, 70) == pytest.approx(1.845, abs=5e-4)
    assert c.bsa_mosteller(180, 80) == pytest.approx(2.0, abs=1e-12)  # hand-computed: sqrt(4)


def test_serum_osmolality():
    # 2 Na + glucose/18 + BUN/2.8; worked example at calculatorlib.com/osmolality-calculator:
    # Na 140, glucose 90, BUN 14 -> 280 + 5 + 5 = 290 mOsm/kg.
    assert c.serum_osmolality(140, 90, 14) == pytest.approx(290.0, abs=1e-9)


def test_aa_gradient_loyola_example():
    # Loyola University MedEd pulmonary module (meddean.luc.edu/lumen/MedEd/.../emb10.htm):
    # ((760 - 47) x 0.21) - 30 x 1.2 = 114 (rounded); PaO2 80 -> A-a gradient 34 mmHg.
    # The page uses x 1.2 for the RQ term, i.e. RQ = 1/1.2.
    value = c.aa_gradient(80, 30, 0.21, rq=1 / 1.2)
    assert value == pytest.approx(34, abs=0.5)
    assert value == pytest.approx(713 * 0.21 - 36 - 80, rel=1e-12)


def test_aa_gradient_default_rq_0_8():
    # AMBOSS alveolar gas equation, PAO2 = FiO2 x (Patm - 47) - PaCO2 / R, R = 0.8.
    # Hand-computed: 0.21 x 713 - 40 / 0.8 = 99.73; minus PaO2 90 = 9.73.
    assert c.alveolar_po2(40) == pytest.approx(99.73, abs=1e-9)
    assert c.aa_gradient(90, 40) == pytest.approx(9.73, abs=1e-9)


# --- unit conversions ------------------------------------------------------------------------


def test_exact_definitions():
    # International yard and pound (1959), NIST SP 811: 1 lb = 0.45359237 kg, 1 in = 2.54 cm.
    assert c.lb_to_kg(1) == 0.45359237
    assert c.in_to_cm(1) == 2.54
    # Fixed points of the Celsius/Fahrenheit scales.
    assert c.fahrenheit_to_celsius(32) == pytest.approx(0.0, abs=1e-12)
    assert c.fahrenheit_to_celsius(212) == pytest.approx(100.0, abs=1e-12)
    assert c.fahrenheit_to_celsius(98.6) == pytest.approx(37.0, abs=1e-9)
    assert c.fahrenheit_to_celsius(-40) == pytest.approx(-40.0, abs=1e-12)


def test_analyte_factors():
    # Glucose 180.156 g/mol: 1 mmol/L = 18.0156 mg/dL (so x 0.0555 is within 0.02 %).
    assert c.glucose_mmol_l_to_mg_dl(1) == pytest.approx(18.0156, rel=1e-12)
    assert c.glucose_mg_dl_to_mmol_l(100) == pytest.approx(100 * 0.0555, rel=2e-4)
    # Creatinine 113.12 g/mol: 1 mg/dL = 88.4 umol/L.
    assert c.creatinine_mg_dl_to_umol_l(1) == pytest.approx(88.4, rel=1e-12)
    assert 10_000 / 113.12 == pytest.approx(c.CREATININE_UMOL_L_PER_MG_DL, rel=1e-3)
    # Calcium 40.078 g/mol: 10 mg/dL = 10 / 4.008 = 2.495 mmol/L.
    assert c.calcium_mg_dl_to_mmol_l(10) == pytest.approx(2.495, abs=5e-4)
    # 1 mmHg = 133.322387415 Pa.
    assert c.convert(1, "mmhg", "kpa") == pytest.approx(0.133322387415, rel=1e-12)


@pytest.mark.parametrize("forward, backward, x", [
    (c.lb_to_kg, c.kg_to_lb, 154.3), (c.in_to_cm, c.cm_to_in, 67.5),
    (c.fahrenheit_to_celsius, c.celsius_to_fahrenheit, 101.3),
    (c.glucose_mg_dl_to_mmol_l, c.glucose_mmol_l_to_mg_dl, 126),
    (c.creatinine_mg_dl_to_umol_l, c.creatinine_umol_l_to_mg_dl, 1.37),
    (c.calcium_mg_dl_to_mmol_l, c.calcium_mmol_l_to_mg_dl, 8.9),
])
def test_round_trips(forward, backward, x):
    assert backward(forward(x)) == pytest.approx(x, rel=1e-12)


def test_generic_convert_matches_named_functions():
    assert c.convert(150, "lb", "kg") == c.lb_to_kg(150)
    assert c.convert(65, "in", "m") == pytest.approx(1.651, rel=1e-12)
    assert c.convert(5.5, "mmol_l", "mg_dl", "glucose") == pytest.approx(99.0858)
    assert c.convert(98.6, "f", "c") == pytest.approx(37.0)
    assert c.convert(140, "mmol_l", "meq_l", "na") == 140
    assert c.convert(40, "percent", "fraction") == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no conversion"):
        c.convert(1, "mg_dl", "mmol_l")  # analyte-specific: needs a quantity
    with pytest.raises(ValueError, match="no conversion"):
        c.convert(1, "lb", "cm")


def test_to_calculator_args_converts_by_quantity():
    args = c.to_calculator_args("bmi", {"weight_lb": 150, "height_in": 65})
    assert args == {"weight_kg": pytest.approx(68.0388555), "height_m": pytest.approx(1.651)}
    given = {"age_years": 60, "sex": "male", "weight_kg": 80, "creatinine_umol_l": 88.4}
    args = c.to_calculator_args("creatinine_clearance", given)
    assert args["creatinine_mg_dl"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="matches no argument"):
        c.to_calculator_args("bmi", {"weight_kg": 70, "glucose_mg_dl": 90})


# --- registry and validation -----------------------------------------------------------------


def test_registry():
    assert {"bmi", "mean_arterial_pressure", "anion_gap", "corrected_calcium",
            "creatinine_clearance", "qtc_bazett", "cha2ds2_vasc", "lb_to_kg", "in_to_cm",
            "fahrenheit_to_celsius", "glucose_mg_dl_to_mmol_l", "creatinine_mg_dl_to_umol_l",
            "calcium_mg_dl_to_mmol_l"} <= set(c.CALCULATORS)
    assert c.calculate("bmi", weight_kg=68, height_m=1.65) == c.bmi(68, 1.65)
    assert c.get_calculator("qtc_bazett").unit == "ms"
    assert c.get_calculator("creatinine_clearance").params == (
        "age_years", "weight_kg", "creatinine_mg_dl", "sex")
    with pytest.raises(ValueError, match="unknown calculator"):
        c.get_calculator("meld_na")
    with pytest.raises(ValueError, match="already registered"):
        c.register("bmi", unit="x", title="x")(lambda: 0.0)


def test_register_new_calculator_is_one_entry():
    @c.register("_test_shock_index", unit="bpm/mmHg", title="shock index")
    def shock_index(heart_rate_bpm: float, sbp_mmhg: float) -> float:
        return heart_rate_bpm / sbp_mmhg

    try:
        assert c.calculate("_test_shock_index", heart_rate_bpm=120, sbp_mmhg=80) == 1.5
    finally:
        del c.CALCULATORS["_test_shock_index"]


@pytest.mark.parametrize("call, name", [
    (lambda: c.bmi(-70, 1.75), "weight_kg"),
    (lambda: c.bmi(70, 0), "height_m"),
    (lambda: c.bmi(float("nan"), 1.75), "weight_kg"),
    (lambda: c.creatinine_clearance_cockcroft_gault(17, 70, 1.0, "male"), "age_years"),
    (lambda: c.creatinine_clearance_cockcroft_gault(40, 0, 1.0, "male"), "weight_kg"),
    (lambda: c.creatinine_clearance_cockcroft_gault(40, 70, 0, "male"), "creatinine_mg_dl"),
    (lambda: c.creatinine_clearance_cockcroft_gault(40, 70, 1.0, "x"), "sex"),
    (lambda: c.qtc_bazett(400, 0), "heart_rate_bpm"),
    (lambda: c.qtc_bazett(400, -60), "heart_rate_bpm"),
    (lambda: c.qtc_bazett(0, 60), "qt_ms"),
    (lambda: c.mean_arterial_pressure(80, 120), "dbp_mmhg"),
    (lambda: c.anion_gap(0, 100, 24), "na_meq_l"),
    (lambda: c.corrected_calcium(9.0, -1), "albumin_g_dl"),
    (lambda: c.cha2ds2_vasc(-1, "male"), "age_years"),
    (lambda: c.aa_gradient(80, 40, fio2_fraction=21), "fio2_fraction"),
    (lambda: c.aa_gradient(80, 40, patm_mmhg=40), "patm_mmhg"),
    (lambda: c.bsa_mosteller(170, 0), "weight_kg"),
    (lambda: c.ideal_body_weight_devine(0, "male"), "height_in"),
    (lambda: c.lb_to_kg(-1), "weight_lb"),
    (lambda: c.glucose_mg_dl_to_mmol_l(-5), "glucose_mg_dl"),
])
def test_invalid_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
