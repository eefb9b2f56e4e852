"""How the seed generator asks about each calculator: one declarative :class:`CalcSpec` each.

A calculator's formula lives in :mod:`meds3.data.calculators` (one ``@register``-ed function);
how questions about it are worded, sampled and worked lives here, in one ``CalcSpec`` appended
to :data:`SPECS`. The generic question builder (:mod:`meds3.data.seedgen`) reads only the
spec's fields, so a calculator with its own question shape (the CHA2DS2-VASc score) brings its
own ``build`` function instead of a special case in the generator. Specs are checked against
the registry when this module is imported: a field naming no argument of its calculator raises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Optional

from meds3.data import calculators as calc

#: How each number of decimals is asked for, and stated in the final step.
ROUNDING = {0: "rounded to the nearest whole number", 1: "rounded to one decimal place",
            2: "rounded to two decimal places"}


@dataclass(frozen=True, kw_only=True)
class AltUnit:
    """Another unit a field may be shown in at the medium and hard levels."""

    token: str  # unit token of :mod:`calculators` ("lb", "mmol_l"); the given input is named quantity_token
    unit: str  # how the question prints it ("lb", "mmol/L")
    decimals: int  # places the shown value is rounded to
    feet: bool = False  # inches shown as "5 ft 7 in" (token "in")


@dataclass(frozen=True, kw_only=True)
class InputField:
    """One calculator argument: how it is named, shown and sampled (in its own unit)."""

    arg: str  # the calculator's parameter name, unit suffix included ("weight_kg", "sex")
    label: str  # how the question names it ("weight", "serum creatinine")
    unit: str = ""  # how the question prints the formula's unit ("kg", "mEq/L"; "" = none)
    lo: float = 0.0  # uniform draw range, unless the spec's ``sample`` draws it jointly
    hi: float = 0.0
    decimals: int = 0  # places the shown value is rounded to
    alts: tuple[AltUnit, ...] = ()  # other units it may be shown in (a conversion step follows)
    choices: tuple[Any, ...] = ()  # a categorical argument drawn from these instead

    @property
    def quantity(self) -> str:
        """The argument name without its unit suffix ("weight" for "weight_kg")."""
        return calc.split_unit(self.arg)[0]

    @property
    def token(self) -> str:
        """The argument's unit token ("kg" for "weight_kg"; "" for "sex")."""
        return calc.split_unit(self.arg)[1]


#: Question text, given inputs, canonical calculator args and solution steps (no final step).
Built = tuple[str, dict[str, Any], dict[str, Any], list[str]]


@dataclass(frozen=True, kw_only=True)
class CalcSpec:
    """How to ask about one registered calculator.

    ``build`` None means the generic formula question (:func:`meds3.data.seedgen.build_formula`):
    ``fields`` shown as a list, a record or a vignette with distractors. ``work`` gives the
    arithmetic steps from the canonical arguments and the calculator's value. Raises
    ``ValueError`` (naming the calculator) for an unregistered calculator, a field that is not
    one of its arguments, an unsupported number of decimals or an exact score with a tolerance.
    """

    calculator: str  # registry name in calculators.CALCULATORS
    ask: str  # imperative clause naming the exact formula, no trailing period
    fields: tuple[InputField, ...] = ()  # in the order the question shows them
    work: Callable[[dict[str, Any], float], list[str]]  # arithmetic steps on canonical args
    decimals: int = 2  # places of the answer
    rel_tol: float = 0.02  # relative tolerance a checker grants (on top of half a unit of rounding)
    exact_score: bool = False  # a points score: an integer answer, no rounding, no tolerance
    sample: Optional[Callable[[random.Random], dict[str, float]]] = None  # joint draw if constrained
    build: Optional[Callable[[CalcSpec, str, random.Random], Built]] = None  # own question shape

    def __post_init__(self) -> None:
        params = calc.get_calculator(self.calculator).params  # raises for an unregistered name
        stray = [f.arg for f in self.fields if f.arg not in params]
        if stray:
            raise ValueError(f"calculator spec {self.calculator!r}: fields {stray} are not arguments "
                             f"of the calculator (its arguments: {list(params)})")
        if self.decimals not in ROUNDING:
            raise ValueError(f"calculator spec {self.calculator!r}: decimals must be one of "
                             f"{sorted(ROUNDING)}, got {self.decimals}")
        if self.exact_score and (self.decimals or self.rel_tol):
            raise ValueError(f"calculator spec {self.calculator!r}: an exact score takes decimals=0 and "
                             f"rel_tol=0, got {self.decimals} and {self.rel_tol}")

    @property
    def abs_tol(self) -> float:
        """What honest rounding can move the answer by (half a unit of its last place; 0 for a score)."""
        return 0.0 if self.exact_score else 0.5 * 10**-self.decimals

    @property
    def rounding(self) -> str:
        """How the question asks for the answer's precision ("rounded to one decimal place")."""
        return "as a whole number" if self.exact_score else ROUNDING[self.decimals]


def fmt(x: float, decimals: int = 4) -> str:
    """Number with at most ``decimals`` places, trailing zeros dropped ("70", "1.7", "0.4536")."""
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{x:.0f}"
    return "0" if text in ("-0", "") else text


# --- fields and units shared by several calculators -------------------------------------------
_LB = AltUnit(token="lb", unit="lb", decimals=1)
_FEET = AltUnit(token="in", unit="in", decimals=0, feet=True)
_MMOL = AltUnit(token="mmol_l", unit="mmol/L", decimals=0)
_KPA = AltUnit(token="kpa", unit="kPa", decimals=2)
_WEIGHT = InputField(arg="weight_kg", label="weight", unit="kg", lo=45, hi=140, decimals=1, alts=(_LB,))
_AGE = InputField(arg="age_years", label="age", unit="years", lo=18, hi=92)
_SEX = InputField(arg="sex", label="sex", choices=("male", "female"))


def _ion(arg: str, label: str) -> InputField:
    """A serum ion in mEq/L, shown in mmol/L as the alternative (equal for a monovalent ion)."""
    return InputField(arg=arg, label=label, unit="mEq/L", alts=(_MMOL,))


def _pressure(arg: str, label: str) -> InputField:
    """A pressure in mmHg, shown in kPa as the alternative."""
    return InputField(arg=arg, label=label, unit="mmHg", alts=(_KPA,))


# --- arithmetic steps (canonical args ``a``, calculator value ``r``) ---------------------------
def _work_bmi(a: dict[str, Any], r: float) -> list[str]:
    w, h = a["weight_kg"], a["height_m"]
    return [f"BMI = weight / height^2 = {fmt(w)} / ({fmt(h)})^2 = {fmt(w)} / {fmt(h * h)} "
            f"= {fmt(r)} kg/m^2."]


def _work_map(a: dict[str, Any], r: float) -> list[str]:
    s, d = a["sbp_mmhg"], a["dbp_mmhg"]
    return [f"MAP = (SBP + 2 × DBP) / 3 = ({fmt(s)} + 2 × {fmt(d)}) / 3 = "
            f"{fmt(s + 2 * d)} / 3 = {fmt(r)} mmHg."]


def _work_ag(a: dict[str, Any], r: float) -> list[str]:
    na, cl, hco3 = a["na_meq_l"], a["cl_meq_l"], a["hco3_meq_l"]
    return [f"Anion gap = Na - (Cl + HCO3) = {fmt(na)} - ({fmt(cl)} + {fmt(hco3)}) = "
            f"{fmt(na)} - {fmt(cl + hco3)} = {fmt(r)} mEq/L."]


def _work_ca(ca_arg: str, alb_arg: str, normal: float, slope: float, alb_unit: str,
             ca_unit: str) -> Callable[[dict[str, Any], float], list[str]]:
    """Corrected-calcium steps for one unit system (conventional or SI)."""

    def work(a: dict[str, Any], r: float) -> list[str]:
        ca, alb = a[ca_arg], a[alb_arg]
        gap, add = normal - alb, slope * (normal - alb)
        return [f"Albumin deficit = {fmt(normal)} - {fmt(alb)} = {fmt(gap)} {alb_unit}; "
                f"{fmt(slope)} × ({fmt(gap)}) = {fmt(add)} {ca_unit}.",
                f"Corrected calcium = {fmt(ca)} {'-' if add < 0 else '+'} {fmt(abs(add))} = "
                f"{fmt(r)} {ca_unit}."]

    return work


def _work_cg(a: dict[str, Any], r: float) -> list[str]:
    age, w, scr = a["age_years"], a["weight_kg"], a["creatinine_mg_dl"]
    num, den = (140 - age) * w, 72 * scr
    steps = [f"Numerator = (140 - age) × weight = (140 - {fmt(age)}) × {fmt(w)} = "
             f"{fmt(140 - age)} × {fmt(w)} = {fmt(num)}.",
             f"Denominator = 72 × creatinine = 72 × {fmt(scr)} = {fmt(den)}; "
             f"{fmt(num)} / {fmt(den)} = {fmt(num / den)} mL/min."]
    if a["sex"] == "female":
        steps.append(f"Female: multiply by 0.85: {fmt(num / den)} × 0.85 = {fmt(r)} mL/min.")
    return steps


def _work_qtc(a: dict[str, Any], r: float) -> list[str]:
    qt, hr = a["qt_ms"], a["heart_rate_bpm"]
    rr = 60 / hr
    return [f"RR interval = 60 / HR = 60 / {fmt(hr)} = {fmt(rr)} s; sqrt(RR) = {fmt(rr ** 0.5)}.",
            f"QTc = QT / sqrt(RR) = {fmt(qt)} / {fmt(rr ** 0.5)} = {fmt(r)} ms."]


def _work_ibw(a: dict[str, Any], r: float) -> list[str]:
    h, base = a["height_in"], 50.0 if a["sex"] == "male" else 45.5
    return [f"Base weight for a {a['sex']} = {fmt(base)} kg; inches over 60 = {fmt(h)} - 60 "
            f"= {fmt(h - 60)}.",
            f"IBW = {fmt(base)} + 2.3 × {fmt(h - 60)} = {fmt(base)} + {fmt(2.3 * (h - 60))} "
            f"= {fmt(r)} kg."]


def _work_bsa(a: dict[str, Any], r: float) -> list[str]:
    h, w = a["height_cm"], a["weight_kg"]
    return [f"BSA = sqrt(height × weight / 3600) = sqrt({fmt(h)} × {fmt(w)} / 3600) = "
            f"sqrt({fmt(h * w)} / 3600) = sqrt({fmt(h * w / 3600)}) = {fmt(r)} m^2."]


def _work_osm(a: dict[str, Any], r: float) -> list[str]:
    na, glu, bun = a["na_meq_l"], a["glucose_mg_dl"], a["bun_mg_dl"]
    return [f"2 × Na = 2 × {fmt(na)} = {fmt(2 * na)}; glucose / 18 = {fmt(glu)} / 18 = "
            f"{fmt(glu / 18)}; BUN / 2.8 = {fmt(bun)} / 2.8 = {fmt(bun / 2.8)}.",
            f"Osmolality = {fmt(2 * na)} + {fmt(glu / 18)} + {fmt(bun / 2.8)} = {fmt(r)} mOsm/kg."]


def _work_aa(a: dict[str, Any], r: float) -> list[str]:
    fio2, patm, paco2, pao2 = a["fio2_fraction"], a["patm_mmhg"], a["paco2_mmhg"], a["pao2_mmhg"]
    alv = calc.alveolar_po2(paco2, fio2, patm)
    return [f"PAO2 = FiO2 × (Patm - 47) - PaCO2 / 0.8 = {fmt(fio2)} × ({fmt(patm)} - 47) - "
            f"{fmt(paco2)} / 0.8 = {fmt(fio2 * (patm - 47))} - {fmt(paco2 / 0.8)} = {fmt(alv)} mmHg.",
            f"A-a gradient = PAO2 - PaO2 = {fmt(alv)} - {fmt(pao2)} = {fmt(r)} mmHg."]


def _work_conv(text: str) -> Callable[[dict[str, Any], float], list[str]]:
    """Work for a one-argument unit conversion: ``text`` formats with x (input) and r (result)."""
    return lambda a, r: [text.format(x=fmt(next(iter(a.values()))), r=fmt(r))]


# --- joint draws for inputs that constrain each other ------------------------------------------
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


# --- CHA2DS2-VASc: a points score with its own question shape ---------------------------------
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


def _cha2ds2_points(a: dict[str, Any]) -> list[int]:
    """Points per item in the order the solution lists them: age, sex, then each history item."""
    age = a["age_years"]
    return [2 if age >= 75 else 1 if age >= 65 else 0, int(a["sex"] == "female")] + [
        pts * a[arg] for arg, pts, *_ in _CHA_ITEMS]


def _build_cha2ds2(spec: CalcSpec, level: str, rng: random.Random) -> Built:
    """Explicit yes/no list (easy), narrative history (medium), narrative with noise (hard)."""
    age = rng.choice((rng.randint(40, 92), rng.choice((64, 65, 74, 75))))  # boundaries often
    sex = rng.choice(("male", "female"))
    given: dict[str, Any] = {"age_years": age, "sex": sex}
    given.update({arg: rng.random() < 0.4 for arg, *_ in _CHA_ITEMS})
    noun, pron = ("man", "He") if sex == "male" else ("woman", "She")
    present = [rng.choice(syn) for arg, _, syn, _ in _CHA_ITEMS if given[arg]]
    absent = [name for arg, _, _, name in _CHA_ITEMS if not given[arg]]
    extra: list[str] = []
    if level == "easy":
        flags = ", ".join(f"{name}: {'yes' if given[arg] else 'no'}" for arg, _, _, name in _CHA_ITEMS)
        text = f"{spec.ask} for a patient with atrial fibrillation: age {age} years, sex {sex}, {flags}."
    else:
        extra = rng.sample(_CHA_NOISE, rng.randint(2, 3)) if level == "hard" else []
        history = present + extra
        rng.shuffle(history)
        hist = f"{pron} has a history of {', '.join(history)}." if history else \
            f"{pron} has no other medical history."
        neg = f" {pron} has no {', no '.join(absent)}." if absent else ""
        text = f"A {age}-year-old {noun} has atrial fibrillation. {hist}{neg} {spec.ask}."
    points = _cha2ds2_points(given)
    lines = [f"age {age} years: {points[0]}", f"{sex} sex: {points[1]}"] + [
        f"{name}: {pts}" for (_, _, _, name), pts in zip(_CHA_ITEMS, points[2:])]
    steps = [f"Score each item (age >= 75: 2, 65-74: 1; stroke/TIA/thromboembolism: 2; others 1): "
             f"{'; '.join(lines)}."]
    if level == "hard":
        steps.append(f"Not part of the score: {', '.join(extra)}.")
    return text, given, dict(given), steps


def _work_cha2ds2(a: dict[str, Any], r: float) -> list[str]:
    return [f"Total = {' + '.join(map(str, _cha2ds2_points(a)))} = {r}."]


# --- the specs: one per calculator, in generation order ----------------------------------------
_SPEC_LIST = (
    CalcSpec(calculator="bmi", ask="Calculate the patient's body mass index (BMI = weight / height^2)",
             fields=(_WEIGHT, InputField(arg="height_m", label="height", unit="m", lo=1.50, hi=1.98, decimals=2,
                                         alts=(AltUnit(token="cm", unit="cm", decimals=0), _FEET))),
             work=_work_bmi, sample=_sample_body),
    CalcSpec(calculator="mean_arterial_pressure",
             ask="Calculate the mean arterial pressure using MAP = (SBP + 2 × DBP) / 3",
             fields=(_pressure("sbp_mmhg", "systolic blood pressure"),
                     _pressure("dbp_mmhg", "diastolic blood pressure")),
             work=_work_map, decimals=1, sample=_sample_map),
    CalcSpec(calculator="anion_gap", ask="Calculate the serum anion gap without potassium (Na - (Cl + HCO3))",
             fields=(_ion("na_meq_l", "sodium"), _ion("cl_meq_l", "chloride"), _ion("hco3_meq_l", "bicarbonate")),
             work=_work_ag, decimals=1, sample=_sample_ag),
    CalcSpec(calculator="corrected_calcium",
             ask="Calculate the albumin-corrected calcium in mg/dL using corrected Ca = Ca + 0.8 × (4.0 - "
                 "albumin in g/dL)",
             fields=(InputField(arg="calcium_mg_dl", label="total serum calcium", unit="mg/dL", lo=6.5, hi=11.5,
                                decimals=1, alts=(AltUnit(token="mmol_l", unit="mmol/L", decimals=2),)),
                     InputField(arg="albumin_g_dl", label="serum albumin", unit="g/dL", lo=1.5, hi=4.5,
                                decimals=1, alts=(AltUnit(token="g_l", unit="g/L", decimals=0),))),
             work=_work_ca("calcium_mg_dl", "albumin_g_dl", 4.0, 0.8, "g/dL", "mg/dL"), rel_tol=0.01),
    CalcSpec(calculator="corrected_calcium_si",
             ask="Calculate the albumin-corrected calcium in mmol/L using corrected Ca = Ca + 0.02 × (40 - "
                 "albumin in g/L)",
             fields=(InputField(arg="calcium_mmol_l", label="total serum calcium", unit="mmol/L", lo=1.6, hi=2.9,
                                decimals=2, alts=(AltUnit(token="mg_dl", unit="mg/dL", decimals=1),)),
                     InputField(arg="albumin_g_l", label="serum albumin", unit="g/L", lo=15, hi=45,
                                alts=(AltUnit(token="g_dl", unit="g/dL", decimals=1),))),
             work=_work_ca("calcium_mmol_l", "albumin_g_l", 40, 0.02, "g/L", "mmol/L"), rel_tol=0.01),
    CalcSpec(calculator="creatinine_clearance",
             ask="Estimate the creatinine clearance with the Cockcroft-Gault equation using actual body weight",
             fields=(_AGE, _SEX, _WEIGHT,
                     InputField(arg="creatinine_mg_dl", label="serum creatinine", unit="mg/dL", lo=0.5, hi=4.0,
                                decimals=2, alts=(AltUnit(token="umol_l", unit="µmol/L", decimals=0),))),
             work=_work_cg, decimals=1, sample=_sample_cg),
    CalcSpec(calculator="qtc_bazett", ask="Calculate the corrected QT interval with Bazett's formula",
             fields=(InputField(arg="qt_ms", label="QT interval", unit="ms", lo=320, hi=520,
                                alts=(AltUnit(token="s", unit="s", decimals=3),)),
                     InputField(arg="heart_rate_bpm", label="heart rate", unit="beats/min", lo=45, hi=130)),
             work=_work_qtc, decimals=0, sample=_sample_qtc),
    CalcSpec(calculator="ideal_body_weight", ask="Calculate the ideal body weight with the Devine formula",
             fields=(_SEX, InputField(arg="height_in", label="height", unit="in", lo=60, hi=78, decimals=1,
                                      alts=(AltUnit(token="cm", unit="cm", decimals=0), _FEET))),
             work=_work_ibw, decimals=1),
    CalcSpec(calculator="bsa_mosteller", ask="Calculate the body surface area with the Mosteller formula",
             fields=(InputField(arg="height_cm", label="height", unit="cm", lo=148, hi=198, alts=(_FEET,)),
                     _WEIGHT),
             work=_work_bsa, sample=_sample_body),
    CalcSpec(calculator="serum_osmolality",
             ask="Calculate the serum osmolality using 2 × Na + glucose (mg/dL) / 18 + BUN (mg/dL) / 2.8",
             fields=(InputField(arg="na_meq_l", label="sodium", unit="mEq/L", lo=122, hi=158, alts=(_MMOL,)),
                     InputField(arg="glucose_mg_dl", label="glucose", unit="mg/dL", lo=60, hi=700,
                                alts=(AltUnit(token="mmol_l", unit="mmol/L", decimals=1),)),
                     InputField(arg="bun_mg_dl", label="blood urea nitrogen (BUN)", unit="mg/dL", lo=5, hi=90)),
             work=_work_osm, decimals=1),
    CalcSpec(calculator="aa_gradient",
             ask="Calculate the alveolar-arterial oxygen gradient using PAO2 = FiO2 × (Patm - 47) - PaCO2 / 0.8",
             fields=(InputField(arg="fio2_fraction", label="FiO2", decimals=2,
                                alts=(AltUnit(token="percent", unit="%", decimals=0),)),
                     InputField(arg="patm_mmhg", label="barometric pressure", unit="mmHg"),
                     _pressure("paco2_mmhg", "PaCO2"), _pressure("pao2_mmhg", "PaO2")),
             work=_work_aa, decimals=1, sample=_sample_aa),
    CalcSpec(calculator="lb_to_kg", ask="Convert the patient's weight to kilograms",
             fields=(InputField(arg="weight_lb", label="weight", unit="lb", lo=90, hi=330, decimals=1),),
             work=_work_conv("{x} lb × 0.45359237 kg/lb = {r} kg."), rel_tol=0.01),
    CalcSpec(calculator="in_to_cm", ask="Convert the patient's height to centimetres",
             fields=(InputField(arg="height_in", label="height", unit="in", lo=56, hi=79, decimals=1,
                                alts=(_FEET,)),),
             work=_work_conv("{x} in × 2.54 cm/in = {r} cm."), rel_tol=0.01),
    CalcSpec(calculator="fahrenheit_to_celsius", ask="Convert the patient's temperature to degrees Celsius",
             fields=(InputField(arg="temp_f", label="temperature", unit="°F", lo=94, hi=106, decimals=1),),
             work=_work_conv("°C = (°F - 32) × 5/9 = ({x} - 32) × 5/9 = {r} °C."), decimals=1, rel_tol=0.01),
    CalcSpec(calculator="glucose_mg_dl_to_mmol_l", ask="Convert the serum glucose to mmol/L",
             fields=(InputField(arg="glucose_mg_dl", label="serum glucose", unit="mg/dL", lo=40, hi=600),),
             work=_work_conv("{x} mg/dL ÷ 18.0156 (glucose 180.156 g/mol) = {r} mmol/L."), rel_tol=0.01),
    CalcSpec(calculator="creatinine_mg_dl_to_umol_l", ask="Convert the serum creatinine to µmol/L",
             fields=(InputField(arg="creatinine_mg_dl", label="serum creatinine", unit="mg/dL", lo=0.4, hi=8.0,
                                decimals=2),),
             work=_work_conv("{x} mg/dL × 88.4 = {r} µmol/L."), decimals=1, rel_tol=0.01),
    CalcSpec(calculator="calcium_mg_dl_to_mmol_l", ask="Convert the total serum calcium to mmol/L",
             fields=(InputField(arg="calcium_mg_dl", label="total serum calcium", unit="mg/dL", lo=6.5, hi=13.0,
                                decimals=1),),
             work=_work_conv("{x} mg/dL ÷ 4.008 = {r} mmol/L."), rel_tol=0.01),
    CalcSpec(calculator="cha2ds2_vasc",
             ask="Calculate the patient's CHA2DS2-VASc score for stroke risk in atrial fibrillation",
             work=_work_cha2ds2, decimals=0, rel_tol=0.0, exact_score=True, build=_build_cha2ds2),
)
#: calculator name -> its spec, in generation order (question ``i`` cycles through them).
SPECS: dict[str, CalcSpec] = {s.calculator: s for s in _SPEC_LIST}
if len(SPECS) != len(_SPEC_LIST):
    raise ValueError(f"two calculator specs share a calculator: {[s.calculator for s in _SPEC_LIST]}")
