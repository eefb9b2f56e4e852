"""Seeded generator of clinical-calculation questions with exact, rule-checkable answers.

Levels: ``easy`` gives the inputs in the formula's units; ``medium`` needs a unit conversion
(lb, ft/in, µmol/L, kPa, ...); ``hard`` is a short vignette with distractor findings and, where
the calculator has alternative units, conversions before the formula. Question ``i`` cycles
through calculators, then levels, so every pair appears once ``n >= #calculators × #levels``;
its inputs come from its own ``random.Random`` seeded by ``(seed, i)``, so a longer run extends
a shorter one with the same questions.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from meds3.data import calculators as calc
from meds3.data.question import MedQuestion
from meds3.io import atomic_open

LEVELS = ("easy", "medium", "hard")
SOURCE = "meds3-clinical-calc"
DOMAIN = "clinical_calculation"
_ROUNDING = {0: "rounded to the nearest whole number", 1: "rounded to one decimal place",
             2: "rounded to two decimal places"}


@dataclass(frozen=True)
class _Alt:
    """Another unit a field may be shown in (``feet``: inches shown as "5 ft 7 in")."""

    token: str
    unit: str
    decimals: int
    feet: bool = False


@dataclass(frozen=True)
class _Field:
    """One calculator argument: how it is named, shown and sampled (in its own unit)."""

    quantity: str
    token: str
    label: str
    unit: str
    lo: float = 0.0
    hi: float = 0.0
    decimals: int = 0
    alts: tuple[_Alt, ...] = ()
    choices: tuple[Any, ...] = ()

    @property
    def arg(self) -> str:
        return f"{self.quantity}_{self.token}" if self.token else self.quantity


@dataclass(frozen=True)
class _Spec:
    """How to ask about one registered calculator."""

    calculator: str
    ask: str  # imperative clause naming the exact formula, no trailing period
    fields: tuple[_Field, ...]
    work: Callable[[dict[str, Any], float], list[str]]  # arithmetic steps on canonical args
    decimals: int = 2
    rel_tol: float = 0.02
    sample: Callable[[random.Random], dict[str, float]] | None = None  # joint draw if constrained


def _fmt(x: float, decimals: int = 4) -> str:
    """Number with at most ``decimals`` places, trailing zeros dropped ("70", "1.7", "0.4536")."""
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{x:.0f}"
    return "0" if text in ("-0", "") else text


def _with_unit(number: str, unit: str) -> str:
    """"72.4 kg", "40%", "0.21" (no unit)."""
    return f"{number}%" if unit == "%" else f"{number} {unit}" if unit else number


def _show(value: float, unit: str, alt: _Alt | None = None) -> str:
    """A given value as the question shows it ("5 ft 7 in" for a feet display)."""
    if alt is not None and alt.feet:
        feet, inches = divmod(int(value), 12)
        return f"{feet} ft {inches} in"
    return _with_unit(_fmt(value), unit)


# --- fields shared by several calculators ----------------------------------------------------
_LB = _Alt("lb", "lb", 1)
_WEIGHT = _Field("weight", "kg", "weight", "kg", 45, 140, 1, (_LB,))
_HEIGHT_M = _Field("height", "m", "height", "m", 1.50, 1.98, 2,
                   (_Alt("cm", "cm", 0), _Alt("in", "in", 0, feet=True)))
_AGE = _Field("age", "years", "age", "years", 18, 92, 0)
_SEX = _Field("sex", "", "sex", "", choices=("male", "female"))
_MMOL = _Alt("mmol_l", "mmol/L", 0)
_KPA = _Alt("kpa", "kPa", 2)


def _work_bmi(a: dict[str, Any], r: float) -> list[str]:
    w, h = a["weight_kg"], a["height_m"]
    return [f"BMI = weight / height^2 = {_fmt(w)} / ({_fmt(h)})^2 = {_fmt(w)} / {_fmt(h * h)} "
            f"= {_fmt(r)} kg/m^2."]


def _work_map(a: dict[str, Any], r: float) -> list[str]:
    s, d = a["sbp_mmhg"], a["dbp_mmhg"]
    return [f"MAP = (SBP + 2 × DBP) / 3 = ({_fmt(s)} + 2 × {_fmt(d)}) / 3 = "
            f"{_fmt(s + 2 * d)} / 3 = {_fmt(r)} mmHg."]


def _work_ag(a: dict[str, Any], r: float) -> list[str]:
    na, cl, hco3 = a["na_meq_l"], a["cl_meq_l"], a["hco3_meq_l"]
    return [f"Anion gap = Na - (Cl + HCO3) = {_fmt(na)} - ({_fmt(cl)} + {_fmt(hco3)}) = "
            f"{_fmt(na)} - {_fmt(cl + hco3)} = {_fmt(r)} mEq/L."]


def _work_ca(a: dict[str, Any], r: float) -> list[str]:
    si = "calcium_mmol_l" in a  # SI twin: 0.02 mmol/L per g/L below 40 g/L
    ca, alb, normal, slope, au, cu = (
        (a["calcium_mmol_l"], a["albumin_g_l"], 40, 0.02, "g/L", "mmol/L") if si
        else (a["calcium_mg_dl"], a["albumin_g_dl"], 4.0, 0.8, "g/dL", "mg/dL"))
    gap, add = normal - alb, slope * (normal - alb)
    return [f"Albumin deficit = {_fmt(normal)} - {_fmt(alb)} = {_fmt(gap)} {au}; "
            f"{_fmt(slope)} × ({_fmt(gap)}) = {_fmt(add)} {cu}.",
            f"Corrected calcium = {_fmt(ca)} {'-' if add < 0 else '+'} {_fmt(abs(add))} = "
            f"{_fmt(r)} {cu}."]


def _work_cg(a: dict[str, Any], r: float) -> list[str]:
    age, w, scr = a["age_years"], a["weight_kg"], a["creatinine_mg_dl"]
    num, den = (140 - age) * w, 72 * scr
    steps = [f"Numerator = (140 - age) × weight = (140 - {_fmt(age)}) × {_fmt(w)} = "
             f"{_fmt(140 - age)} × {_fmt(w)} = {_fmt(num)}.",
             f"Denominator = 72 × creatinine = 72 × {_fmt(scr)} = {_fmt(den)}; "
             f"{_fmt(num)} / {_fmt(den)} = {_fmt(num / den)} mL/min."]
    if a["sex"] == "female":
        steps.append(f"Female: multiply by 0.85: {_fmt(num / den)} × 0.85 = {_fmt(r)} mL/min.")
    return steps


def _work_qtc(a: dict[str, Any], r: float) -> list[str]:
    qt, hr = a["qt_ms"], a["heart_rate_bpm"]
    rr = 60 / hr
    return [f"RR interval = 60 / HR = 60 / {_fmt(hr)} = {_fmt(rr)} s; "
            f"sqrt(RR) = {_fmt(rr ** 0.5)}.",
            f"QTc = QT / sqrt(RR) = {_fmt(qt)} / {_fmt(rr ** 0.5)} = {_fmt(r)} ms."]


def _work_ibw(a: dict[str, Any], r: float) -> list[str]:
    h, base = a["height_in"], 50.0 if a["sex"] == "male" else 45.5
    return [f"Base weight for a {a['sex']} = {_fmt(base)} kg; inches over 60 = {_fmt(h)} - 60 "
            f"= {_fmt(h - 60)}.",
            f"IBW = {_fmt(base)} + 2.3 × {_fmt(h - 60)} = {_fmt(base)} + {_fmt(2.3 * (h - 60))} "
            f"= {_fmt(r)} kg."]


def _work_bsa(a: dict[str, Any], r: float) -> list[str]:
    h, w = a["height_cm"], a["weight_kg"]
    return [f"BSA = sqrt(height × weight / 3600) = sqrt({_fmt(h)} × {_fmt(w)} / 3600) = "
            f"sqrt({_fmt(h * w)} / 3600) = sqrt({_fmt(h * w / 3600)}) = {_fmt(r)} m^2."]


def _work_osm(a: dict[str, Any], r: float) -> list[str]:
    na, glu, bun = a["na_meq_l"], a["glucose_mg_dl"], a["bun_mg_dl"]
    return [f"2 × Na = 2 × {_fmt(na)} = {_fmt(2 * na)}; glucose / 18 = {_fmt(glu)} / 18 = "
            f"{_fmt(glu / 18)}; BUN / 2.8 = {_fmt(bun)} / 2.8 = {_fmt(bun / 2.8)}.",
            f"Osmolality = {_fmt(2 * na)} + {_fmt(glu / 18)} + {_fmt(bun / 2.8)} = "
            f"{_fmt(r)} mOsm/kg."]


def _work_aa(a: dict[str, Any], r: float) -> list[str]:
    fio2, patm, paco2, pao2 = a["fio2_fraction"], a["patm_mmhg"], a["paco2_mmhg"], a["pao2_mmhg"]
    alv = calc.alveolar_po2(paco2, fio2, patm)
    return [f"PAO2 = FiO2 × (Patm - 47) - PaCO2 / 0.8 = {_fmt(fio2)} × ({_fmt(patm)} - 47) - "
            f"{_fmt(paco2)} / 0.8 = {_fmt(fio2 * (patm - 47))} - {_fmt(paco2 / 0.8)} = "
            f"{_fmt(alv)} mmHg.",
            f"A-a gradient = PAO2 - PaO2 = {_fmt(alv)} - {_fmt(pao2)} = {_fmt(r)} mmHg."]


def _work_conv(text: str) -> Callable[[dict[str, Any], float], list[str]]:
    """Work for a one-argument unit conversion: ``text`` formats with x (input) and r (result)."""
    return lambda a, r: [text.format(x=_fmt(next(iter(a.values()))), r=_fmt(r))]


def _sample_body(rng: random.Random) -> dict[str, float]:
    height = rng.uniform(1.50, 1.98)  # weight from a BMI of 17-45, so body shapes stay human
    weight = rng.uniform(17, 45) * height**2
    return {"height_m": height, "height_cm": 100 * height, "weight_kg": weight}


def _sample_cg(rng: random.Random) -> dict[str, float]:
    while True:  # redraw the rare extremes (CrCl > 180 mL/min) a real patient would not show
        age, weight = rng.randint(18, 92), rng.uniform(45, 120)
        scr = rng.uniform(0.6, 1.3) if rng.random() < 0.6 else rng.uniform(1.3, 4.0)
        if 10 <= (140 - age) * weight / (72 * scr) <= 180:
            return {"age_years": age, "weight_kg": weight, "creatinine_mg_dl": scr}


def _sample_ag(rng: random.Random) -> dict[str, float]:
    na, hco3, gap = rng.randint(128, 150), rng.randint(8, 30), rng.randint(4, 30)
    return {"na_meq_l": na, "hco3_meq_l": hco3, "cl_meq_l": na - hco3 - gap}  # keeps the gap real


def _sample_map(rng: random.Random) -> dict[str, float]:
    sbp = rng.randint(85, 200)
    return {"sbp_mmhg": sbp, "dbp_mmhg": rng.randint(45, min(120, sbp - 20))}


def _sample_qtc(rng: random.Random) -> dict[str, float]:
    hr = rng.randint(45, 130)  # QT shortens as HR rises: draw the QTc, derive a matching QT
    return {"heart_rate_bpm": hr, "qt_ms": rng.uniform(370, 530) * (60 / hr) ** 0.5}


def _sample_aa(rng: random.Random) -> dict[str, float]:
    fio2, paco2 = rng.choice((0.21, 0.21, 0.28, 0.3, 0.35, 0.4, 0.5, 0.6)), rng.randint(25, 60)
    patm = rng.choice((760, 760, 760, 747, 630))
    alv = calc.alveolar_po2(paco2, fio2, patm)
    return {"fio2_fraction": fio2, "patm_mmhg": patm, "paco2_mmhg": paco2,
            "pao2_mmhg": round(alv - rng.uniform(3, 0.6 * alv - 10))}  # PaO2 below PAO2


_ION = {q: _Field(q, "meq_l", label, "mEq/L", alts=(_MMOL,))
        for q, label in (("na", "sodium"), ("cl", "chloride"), ("hco3", "bicarbonate"))}
_SPECS: dict[str, _Spec] = {s.calculator: s for s in (
    _Spec("bmi", "Calculate the patient's body mass index (BMI = weight / height^2)",
          (_WEIGHT, _HEIGHT_M), _work_bmi, sample=_sample_body),
    _Spec("mean_arterial_pressure",
          "Calculate the mean arterial pressure using MAP = (SBP + 2 × DBP) / 3",
          (_Field("sbp", "mmhg", "systolic blood pressure", "mmHg", alts=(_KPA,)),
           _Field("dbp", "mmhg", "diastolic blood pressure", "mmHg", alts=(_KPA,))),
          _work_map, decimals=1, sample=_sample_map),
    _Spec("anion_gap", "Calculate the serum anion gap without potassium (Na - (Cl + HCO3))",
          (_ION["na"], _ION["cl"], _ION["hco3"]), _work_ag, decimals=1, sample=_sample_ag),
    _Spec("corrected_calcium", "Calculate the albumin-corrected calcium in mg/dL using "
          "corrected Ca = Ca + 0.8 × (4.0 - albumin in g/dL)",
          (_Field("calcium", "mg_dl", "total serum calcium", "mg/dL", 6.5, 11.5, 1,
                  (_Alt("mmol_l", "mmol/L", 2),)),
           _Field("albumin", "g_dl", "serum albumin", "g/dL", 1.5, 4.5, 1,
                  (_Alt("g_l", "g/L", 0),))),
          _work_ca, rel_tol=0.01),
    _Spec("corrected_calcium_si", "Calculate the albumin-corrected calcium in mmol/L using "
          "corrected Ca = Ca + 0.02 × (40 - albumin in g/L)",
          (_Field("calcium", "mmol_l", "total serum calcium", "mmol/L", 1.6, 2.9, 2,
                  (_Alt("mg_dl", "mg/dL", 1),)),
           _Field("albumin", "g_l", "serum albumin", "g/L", 15, 45, 0, (_Alt("g_dl", "g/dL", 1),))),
          _work_ca, rel_tol=0.01),
    _Spec("creatinine_clearance", "Estimate the creatinine clearance with the Cockcroft-Gault "
          "equation using actual body weight",
          (_AGE, _SEX, _WEIGHT, _Field("creatinine", "mg_dl", "serum creatinine", "mg/dL", 0.5,
                                       4.0, 2, (_Alt("umol_l", "µmol/L", 0),))),
          _work_cg, decimals=1, sample=_sample_cg),
    _Spec("qtc_bazett", "Calculate the corrected QT interval with Bazett's formula",
          (_Field("qt", "ms", "QT interval", "ms", 320, 520, 0, (_Alt("s", "s", 3),)),
           _Field("heart_rate", "bpm", "heart rate", "beats/min", 45, 130, 0)),
          _work_qtc, decimals=0, sample=_sample_qtc),
    _Spec("ideal_body_weight", "Calculate the ideal body weight with the Devine formula",
          (_SEX, _Field("height", "in", "height", "in", 60, 78, 1,
                        (_Alt("cm", "cm", 0), _Alt("in", "in", 0, feet=True)))),
          _work_ibw, decimals=1),
    _Spec("bsa_mosteller", "Calculate the body surface area with the Mosteller formula",
          (_Field("height", "cm", "height", "cm", 148, 198, 0, (_Alt("in", "in", 0, feet=True),)),
           _WEIGHT), _work_bsa, sample=_sample_body),
    _Spec("serum_osmolality", "Calculate the serum osmolality using 2 × Na + glucose (mg/dL) / 18 "
          "+ BUN (mg/dL) / 2.8",
          (_Field("na", "meq_l", "sodium", "mEq/L", 122, 158, 0, (_MMOL,)),
           _Field("glucose", "mg_dl", "glucose", "mg/dL", 60, 700, 0,
                  (_Alt("mmol_l", "mmol/L", 1),)),
           _Field("bun", "mg_dl", "blood urea nitrogen (BUN)", "mg/dL", 5, 90, 0)),
          _work_osm, decimals=1),
    _Spec("aa_gradient", "Calculate the alveolar-arterial oxygen gradient using PAO2 = FiO2 × "
          "(Patm - 47) - PaCO2 / 0.8",
          (_Field("fio2", "fraction", "FiO2", "", decimals=2, alts=(_Alt("percent", "%", 0),)),
           _Field("patm", "mmhg", "barometric pressure", "mmHg"),
           _Field("paco2", "mmhg", "PaCO2", "mmHg", alts=(_KPA,)),
           _Field("pao2", "mmhg", "PaO2", "mmHg", alts=(_KPA,))),
          _work_aa, decimals=1, sample=_sample_aa),
    _Spec("lb_to_kg", "Convert the patient's weight to kilograms",
          (_Field("weight", "lb", "weight", "lb", 90, 330, 1),),
          _work_conv("{x} lb × 0.45359237 kg/lb = {r} kg."), rel_tol=0.01),
    _Spec("in_to_cm", "Convert the patient's height to centimetres",
          (_Field("height", "in", "height", "in", 56, 79, 1, (_Alt("in", "in", 0, feet=True),)),),
          _work_conv("{x} in × 2.54 cm/in = {r} cm."), rel_tol=0.01),
    _Spec("fahrenheit_to_celsius", "Convert the patient's temperature to degrees Celsius",
          (_Field("temp", "f", "temperature", "°F", 94, 106, 1),),
          _work_conv("°C = (°F - 32) × 5/9 = ({x} - 32) × 5/9 = {r} °C."), decimals=1,
          rel_tol=0.01),
    _Spec("glucose_mg_dl_to_mmol_l", "Convert the serum glucose to mmol/L",
          (_Field("glucose", "mg_dl", "serum glucose", "mg/dL", 40, 600, 0),),
          _work_conv("{x} mg/dL ÷ 18.0156 (glucose 180.156 g/mol) = {r} mmol/L."), rel_tol=0.01),
    _Spec("creatinine_mg_dl_to_umol_l", "Convert the serum creatinine to µmol/L",
          (_Field("creatinine", "mg_dl", "serum creatinine", "mg/dL", 0.4, 8.0, 2),),
          _work_conv("{x} mg/dL × 88.4 = {r} µmol/L."), decimals=1, rel_tol=0.01),
    _Spec("calcium_mg_dl_to_mmol_l", "Convert the total serum calcium to mmol/L",
          (_Field("calcium", "mg_dl", "total serum calcium", "mg/dL", 6.5, 13.0, 1),),
          _work_conv("{x} mg/dL ÷ 4.008 = {r} mmol/L."), rel_tol=0.01),
)}
_CHA2DS2 = "cha2ds2_vasc"
#: Calculators the generator can ask about, in generation order.
CALCULATOR_NAMES: tuple[str, ...] = tuple(_SPECS) + (_CHA2DS2,)

# Distractors for hard vignettes: (quantity it would collide with, text maker).
_DISTRACTORS: tuple[tuple[str, Callable[[random.Random], str]], ...] = (
    ("temp", lambda r: f"temperature {r.uniform(36.4, 38.6):.1f} °C"),
    ("heart_rate", lambda r: f"heart rate {r.randint(58, 112)} beats/min"),
    ("sbp", lambda r: f"blood pressure {r.randint(105, 165)}/{r.randint(60, 95)} mmHg"),
    ("resp", lambda r: f"respiratory rate {r.randint(12, 26)} breaths/min"),
    ("spo2", lambda r: f"SpO2 {r.randint(90, 99)}%"),
    ("weight", lambda r: f"weight {r.uniform(48, 125):.1f} kg"),
    ("height", lambda r: f"height {r.randint(150, 195)} cm"),
    ("hb", lambda r: f"hemoglobin {r.uniform(9.5, 16.0):.1f} g/dL"),
    ("wbc", lambda r: f"white cell count {r.uniform(4.0, 15.0):.1f} × 10^9/L"),
    ("plt", lambda r: f"platelets {r.randint(140, 420)} × 10^9/L"),
    ("k", lambda r: f"potassium {r.uniform(3.3, 5.4):.1f} mmol/L"),
    ("glucose", lambda r: f"glucose {r.randint(75, 190)} mg/dL"),
    ("bun", lambda r: f"BUN {r.randint(8, 34)} mg/dL"),
    ("alt", lambda r: f"ALT {r.randint(12, 70)} U/L"),
    ("inr", lambda r: f"INR {r.uniform(0.9, 1.4):.1f}"),
    ("hba1c", lambda r: f"HbA1c {r.uniform(5.2, 9.5):.1f}%"),
    ("ldl", lambda r: f"LDL cholesterol {r.randint(70, 190)} mg/dL"),
)
_SETTINGS = ("emergency department", "medical clinic", "pre-operative assessment clinic",
             "hospital ward round", "nephrology clinic", "urgent care centre")
_COMPLAINTS = ("fatigue", "shortness of breath", "dizziness", "a routine follow-up visit",
               "palpitations", "reduced appetite", "leg swelling", "a medication review")


def _present(spec: _Spec, level: str, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any],
                                                                     list[str], list[str]]:
    """Draw inputs; returns (given inputs, canonical args, shown texts, conversion steps)."""
    canonical = spec.sample(rng) if spec.sample else {}
    convertible = [f for f in spec.fields if f.alts]
    forced = rng.choice(convertible) if convertible and level != "easy" else None
    given: dict[str, Any] = {}
    args: dict[str, Any] = {}
    shown: list[str] = []
    steps: list[str] = []
    for f in spec.fields:
        if f.choices:
            value = rng.choice(f.choices)
            given[f.arg] = args[f.arg] = value
            shown.append(f"{f.label} {value}")
            continue
        raw = canonical[f.arg] if f.arg in canonical else rng.uniform(f.lo, f.hi)
        use_alt = f is forced or (level == "hard" and f.alts and rng.random() < 0.5) or (
            level == "medium" and f.alts and rng.random() < 0.3)
        if not use_alt:
            value = round(raw, f.decimals) if f.decimals else int(round(raw))
            given[f.arg] = args[f.arg] = value
            shown.append(f"{f.label} {_show(value, f.unit)}")
            continue
        alt = rng.choice(f.alts)
        value = round(calc.convert(raw, f.token, alt.token, f.quantity), alt.decimals)
        value = value if alt.decimals else int(value)
        given[f"{f.quantity}_{alt.token}"] = value
        args[f.arg] = calc.convert(value, alt.token, f.token, f.quantity)
        shown.append(f"{f.label} {_show(value, alt.unit, alt)}")
        steps.append(_conversion_step(f, alt, value, args[f.arg]))
    return given, args, shown, steps


def _conversion_step(f: _Field, alt: _Alt, value: float, result: float) -> str:
    """One "convert X to the formula's unit" step with the arithmetic shown."""
    text = f"Convert {f.label} to {f.unit or 'a fraction'}: "
    if alt.feet:
        feet, inches = divmod(int(value), 12)
        text += f"{feet} ft {inches} in = {feet} × 12 + {inches} = {int(value)} in"
        if f.token == "in":
            return text + "."
        text += "; "
    op, k = calc.conversion_rule(alt.token, f.token, f.quantity)
    given, got = _with_unit(_fmt(value), alt.unit), _with_unit(_fmt(result), f.unit)
    if k == 1.0:  # mmol/L -> mEq/L for a monovalent ion
        return text + f"{given} = {got} (monovalent ion: 1 mmol/L = 1 mEq/L)."
    return text + f"{given} {'×' if op == 'mul' else '÷'} {_fmt(k, 8)} = {got}."


_Built = tuple[str, dict[str, Any], dict[str, Any], list[str]]  # text, inputs, args, steps


def _build_formula(spec: _Spec, level: str, rng: random.Random) -> _Built:
    """Question text, given inputs, canonical args and solution steps (no final) for one spec."""
    given, args, shown, steps = _present(spec, level, rng)
    if level == "easy":
        text = f"{spec.ask} for a patient with: {', '.join(shown)}."
    elif level == "medium":
        if not any(f.alts for f in spec.fields):  # a pure conversion: one distractor instead
            pool = [d for q, d in _DISTRACTORS if q not in {f.quantity for f in spec.fields}]
            shown.insert(rng.randint(0, len(shown)), rng.choice(pool)(rng))
        text = f"A patient's record shows: {', '.join(shown)}. {spec.ask}."
    else:
        pool = [d for q, d in _DISTRACTORS if q not in {f.quantity for f in spec.fields}]
        noise = [make(rng) for make in rng.sample(pool, rng.randint(3, 5))]
        person = [s for s in shown if not s.startswith(("age ", "sex "))]
        findings = person + noise
        rng.shuffle(findings)
        age = given.get("age_years", rng.randint(25, 85))
        sex = given.get("sex", rng.choice(("male", "female")))
        noun = "man" if sex == "male" else "woman"
        text = (f"A {age}-year-old {noun} is seen in the {rng.choice(_SETTINGS)} for "
                f"{rng.choice(_COMPLAINTS)}. Findings: {'; '.join(findings)}. {spec.ask}.")
        used = ", ".join(person + [s for s in shown if s.startswith(("age ", "sex "))])
        steps.insert(0, f"Identify the values the formula needs: {used}. The other findings "
                        f"({'; '.join(noise)}) are not needed.")
    return text, given, args, steps


_CHA_ITEMS = (  # (arg, points, scored synonyms, short name)
    ("chf", 1, ("congestive heart failure", "heart failure with an ejection fraction of 30%",
                "left ventricular systolic dysfunction"), "heart failure"),
    ("hypertension", 1, ("hypertension", "high blood pressure treated with amlodipine",
                         "hypertension on lisinopril"), "hypertension"),
    ("diabetes", 1, ("type 2 diabetes mellitus", "diabetes treated with metformin",
                     "insulin-treated diabetes"), "diabetes"),
    ("stroke_tia", 2, ("a prior ischemic stroke", "a transient ischemic attack two years ago",
                       "a previous systemic embolism to the leg"), "stroke/TIA/thromboembolism"),
    ("vascular_disease", 1, ("a prior myocardial infarction", "peripheral artery disease",
                             "complex aortic plaque on echocardiography"), "vascular disease"),
)
_CHA_NOISE = ("hyperlipidemia", "current smoking", "chronic kidney disease stage 3", "obesity",
              "hypothyroidism", "COPD", "gout", "osteoarthritis", "a family history of stroke")


def _build_cha2ds2(level: str, rng: random.Random) -> _Built:
    """CHA2DS2-VASc question: explicit list (easy), narrative (medium), narrative + noise (hard)."""
    age = rng.choice((rng.randint(40, 92), rng.choice((64, 65, 74, 75))))  # boundaries often
    sex = rng.choice(("male", "female"))
    given: dict[str, Any] = {"age_years": age, "sex": sex}
    given.update({arg: rng.random() < 0.4 for arg, *_ in _CHA_ITEMS})
    ask = ("Calculate the patient's CHA2DS2-VASc score for stroke risk in atrial fibrillation")
    noun, pron = ("man", "He") if sex == "male" else ("woman", "She")
    present = [rng.choice(syn) for arg, _, syn, _ in _CHA_ITEMS if given[arg]]
    absent = [name for arg, _, _, name in _CHA_ITEMS if not given[arg]]
    if level == "easy":
        flags = ", ".join(f"{name}: {'yes' if given[arg] else 'no'}"
                          for arg, _, _, name in _CHA_ITEMS)
        text = f"{ask} for a patient with atrial fibrillation: age {age} years, sex {sex}, {flags}."
    else:
        extra = rng.sample(_CHA_NOISE, rng.randint(2, 3)) if level == "hard" else []
        history = present + extra
        rng.shuffle(history)
        hist = f"{pron} has a history of {', '.join(history)}." if history else \
            f"{pron} has no other medical history."
        neg = f" {pron} has no {', no '.join(absent)}." if absent else ""
        text = f"A {age}-year-old {noun} has atrial fibrillation. {hist}{neg} {ask}."
    age_pts = 2 if age >= 75 else 1 if age >= 65 else 0
    lines = [f"age {age} years: {age_pts}", f"{sex} sex: {int(sex == 'female')}"] + [
        f"{name}: {pts if given[arg] else 0}" for arg, pts, _, name in _CHA_ITEMS]
    steps = [f"Score each item (age >= 75: 2, 65-74: 1; stroke/TIA/thromboembolism: 2; others 1): "
             f"{'; '.join(lines)}."]
    if level == "hard":
        steps.append(f"Not part of the score: {', '.join(extra)}.")
    points = [age_pts, int(sex == "female")] + [pts * given[arg] for arg, pts, *_ in _CHA_ITEMS]
    steps.append(f"Total = {' + '.join(map(str, points))} = {sum(points)}.")
    return text, given, dict(given), steps


def _make_question(name: str, level: str, seed: int, i: int) -> MedQuestion:
    """Build question ``i`` of a run; every random draw comes from its own generator."""
    rng = random.Random(f"meds3-calc:{seed}:{i}")  # str seeds hash with sha512: stable across runs
    if name == _CHA2DS2:
        text, given, args, steps = _build_cha2ds2(level, rng)
        decimals, rel_tol = 0, 0.0
    else:
        spec = _SPECS[name]
        text, given, args, steps = _build_formula(spec, level, rng)
        decimals, rel_tol = spec.decimals, spec.rel_tol
    info = calc.get_calculator(name)
    value = info.func(**args)
    if name != _CHA2DS2:
        steps += _SPECS[name].work(args, value)
    answer = f"{value:.{decimals}f}"
    answer = f"{0:.{decimals}f}" if float(answer) == 0 else answer  # never "-0.0"
    abs_tol = 0.0 if name == _CHA2DS2 else 0.5 * 10**-decimals  # what honest rounding can move
    width = max(abs_tol, rel_tol * abs(float(answer)))
    unit = info.unit
    done = "The" if name == _CHA2DS2 else f"Rounded {_ROUNDING[decimals].split(' ', 1)[1]}, the"
    steps.append(f"{done} {info.title} is {answer} {unit}. The answer is {answer} {unit}.")
    rounding = "as a whole number" if name == _CHA2DS2 else _ROUNDING[decimals]
    question = f"{text} Give the answer in {unit}, {rounding}."
    return MedQuestion(
        id=f"calc_{seed}_{i:05d}_{name}", question=question, options={}, answer=answer,
        task_type="numeric", domain=DOMAIN, source=SOURCE,
        metadata={"unit": unit, "tolerance": rel_tol, "abs_tolerance": abs_tol,
                  "range": [round(float(answer) - width, 6), round(float(answer) + width, 6)],
                  "calculator": name, "level": level, "inputs": given, "decimals": decimals,
                  "solution": "\n\n".join(f"Step {k}: {s}" for k, s in enumerate(steps, 1))})


def generate_calc_questions(n: int, seed: int = 0, levels: Sequence[str] = LEVELS,
                            calculators: Iterable[str] | None = None) -> list[MedQuestion]:
    """Generate ``n`` clinical-calculation questions, reproducibly.

    Takes the count, a seed, the levels to cycle through (subset of :data:`LEVELS`) and the
    calculator names (default :data:`CALCULATOR_NAMES`). Returns ``MedQuestion``s with
    ``task_type="numeric"``; same arguments give identical output. Raises ``ValueError`` for
    a negative ``n``, an unknown level or calculator, or an empty list of either.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    levels = tuple(levels)
    names = tuple(CALCULATOR_NAMES if calculators is None else calculators)
    bad_levels = [lv for lv in levels if lv not in LEVELS]
    bad_names = [c for c in names if c not in CALCULATOR_NAMES]
    if not levels or bad_levels:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {list(levels)}")
    if not names or bad_names:
        raise ValueError(f"unknown calculators {bad_names or '(none given)'}; "
                         f"known: {list(CALCULATOR_NAMES)}")
    return [_make_question(names[i % len(names)], levels[(i // len(names)) % len(levels)], seed, i)
            for i in range(n)]


def generate_calc_file(path: str | os.PathLike[str], n: int, seed: int = 0,
                       levels: Sequence[str] = LEVELS,
                       calculators: Iterable[str] | None = None) -> Path:
    """Write :func:`generate_calc_questions` output as JSONL (one ``to_dict()`` per line).

    The file is written atomically (:func:`meds3.io.atomic_open`), so a reader never sees half a
    file. Returns the path; raises as :func:`generate_calc_questions`
    or ``OSError`` when the folder is not writable.
    """
    path = Path(path)
    questions = generate_calc_questions(n, seed, levels, calculators)
    with atomic_open(path) as fh:
        for q in questions:
            fh.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    return path
