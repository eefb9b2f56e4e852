"""Clinical calculators: pure formulas with explicit units, and a registry by name.

Every argument name carries its unit (``weight_kg``, ``creatinine_mg_dl``); a value given in
another unit goes through :func:`convert` first. A new calculator is one decorated function::

    @register("shock_index", unit="bpm/mmHg", title="shock index")
    def shock_index(heart_rate_bpm: float, sbp_mmhg: float) -> float: ...

Invalid physiological input raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

# --- constants (exact where a definition exists) ---------------------------------------------
#: kg per avoirdupois pound, exact (International Yard and Pound Agreement, 1959; NIST SP 811).
KG_PER_LB = 0.45359237
#: cm per inch, exact (same agreement).
CM_PER_IN = 2.54
#: mg/dL per mmol/L of glucose: molar mass of C6H12O6, 180.156 g/mol, / 10 (dL per L).
GLUCOSE_MG_DL_PER_MMOL_L = 18.0156
#: µmol/L per mg/dL of creatinine: 10 000 / 113.12 g/mol = 88.40, the factor labs use.
CREATININE_UMOL_L_PER_MG_DL = 88.4
#: mg/dL per mmol/L of calcium: atomic mass 40.078 g/mol / 10.
CALCIUM_MG_DL_PER_MMOL_L = 4.008
#: mmHg per kPa: 1 mmHg is defined as 133.322387415 Pa.
MMHG_PER_KPA = 1000.0 / 133.322387415


# --- registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calculator:
    """A registered calculator: its function, result unit and argument names."""

    name: str
    func: Callable[..., float]
    unit: str
    title: str
    params: tuple[str, ...]


#: name -> :class:`Calculator`, filled by :func:`register`.
CALCULATORS: dict[str, Calculator] = {}


_Func = Callable[..., Any]


def register(name: str, unit: str, title: str) -> Callable[[_Func], _Func]:
    """Decorator adding a function to :data:`CALCULATORS`.

    Takes the registry ``name``, the result ``unit`` and a human ``title``; returns the
    function unchanged. Raises ``ValueError`` if the name is already taken.
    """

    def wrap(func: _Func) -> _Func:
        if name in CALCULATORS:
            raise ValueError(f"calculator {name!r} is already registered")
        params = tuple(inspect.signature(func).parameters)
        CALCULATORS[name] = Calculator(name, func, unit, title, params)
        return func

    return wrap


def get_calculator(name: str) -> Calculator:
    """Return the registered calculator ``name``; raises ``ValueError`` listing known names."""
    if name not in CALCULATORS:
        raise ValueError(f"unknown calculator {name!r}; known: {sorted(CALCULATORS)}")
    return CALCULATORS[name]


def calculate(name: str, **kwargs: Any) -> float:
    """Run calculator ``name`` on keyword arguments in its own units; returns its value."""
    return get_calculator(name).func(**kwargs)


# --- validation helpers ----------------------------------------------------------------------
def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _positive(name: str, value: float) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _sex(sex: str) -> str:
    norm = str(sex).strip().lower()
    if norm not in ("male", "female"):
        raise ValueError(f"sex must be 'male' or 'female', got {sex!r}")
    return norm


# --- unit conversion --------------------------------------------------------------------------
# (quantity, from, to) -> (op, k); quantity "" means any quantity (mass, length, pressure...).
_PRIMARY: list[tuple[str, str, str, str, float]] = [
    ("", "lb", "kg", "mul", KG_PER_LB),
    ("", "in", "cm", "mul", CM_PER_IN),
    ("", "in", "m", "mul", CM_PER_IN / 100),
    ("", "cm", "m", "div", 100.0),
    ("", "kpa", "mmhg", "mul", MMHG_PER_KPA),
    ("", "s", "ms", "mul", 1000.0),
    ("", "percent", "fraction", "div", 100.0),
    ("glucose", "mmol_l", "mg_dl", "mul", GLUCOSE_MG_DL_PER_MMOL_L),
    ("creatinine", "mg_dl", "umol_l", "mul", CREATININE_UMOL_L_PER_MG_DL),
    ("calcium", "mmol_l", "mg_dl", "mul", CALCIUM_MG_DL_PER_MMOL_L),
    ("albumin", "g_l", "g_dl", "div", 10.0),
] + [(ion, "mmol_l", "meq_l", "mul", 1.0) for ion in ("na", "k", "cl", "hco3")]  # valence 1

#: (quantity, from token, to token) -> (op, k), both directions of every rule in _PRIMARY.
CONVERSIONS: dict[tuple[str, str, str], tuple[str, float]] = {}
for _q, _a, _b, _op, _k in _PRIMARY:
    CONVERSIONS[(_q, _a, _b)] = (_op, _k)
    CONVERSIONS[(_q, _b, _a)] = ("div" if _op == "mul" else "mul", _k)

#: Unit tokens used as argument-name suffixes, longest first so ``_mg_dl`` never reads as ``_g_dl``.
UNIT_TOKENS: tuple[str, ...] = tuple(
    sorted({t for q, a, b in CONVERSIONS for t in (a, b)} | {"f", "c", "years", "bpm"},
           key=lambda t: (-len(t), t)))


def conversion_rule(from_unit: str, to_unit: str, quantity: str = "") -> tuple[str, float]:
    """How to convert between two unit tokens: ``("mul"|"div", k)``, or ``("temp", 0)``.

    Takes unit tokens (``"lb"``, ``"mg_dl"``) and the quantity for analyte-specific factors
    (``"glucose"``). Raises ``ValueError`` when no rule exists.
    """
    if from_unit == to_unit:
        return ("mul", 1.0)
    if {from_unit, to_unit} == {"f", "c"}:
        return ("temp", 0.0)
    for key in ((quantity, from_unit, to_unit), ("", from_unit, to_unit)):
        if key in CONVERSIONS:
            return CONVERSIONS[key]
    raise ValueError(f"no conversion for {quantity or 'value'} from {from_unit!r} to {to_unit!r}")


def convert(value: float, from_unit: str, to_unit: str, quantity: str = "") -> float:
    """Convert ``value`` between unit tokens (see :func:`conversion_rule`); returns the value.

    Raises ``ValueError`` for a non-finite value or an unknown pair of units.
    """
    value = _finite("value", value)
    op, k = conversion_rule(from_unit, to_unit, quantity)
    if op == "temp":
        return fahrenheit_to_celsius(value) if from_unit == "f" else celsius_to_fahrenheit(value)
    return value * k if op == "mul" else value / k


def split_unit(key: str) -> tuple[str, str]:
    """Split an argument name into (quantity, unit token): ``"weight_lb" -> ("weight", "lb")``.

    Names without a known unit suffix (``"sex"``, ``"chf"``) return ``(key, "")``.
    """
    for token in UNIT_TOKENS:
        if key.endswith("_" + token):
            return key[: -len(token) - 1], token
    return key, ""


def to_calculator_args(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Map inputs given in any units (``{"weight_lb": 154.3}``) to calculator ``name``'s args.

    Each input whose name is not an argument is matched by quantity and converted with
    :func:`convert`. Returns the keyword arguments; raises ``ValueError`` for an input that
    matches no argument.
    """
    params = {split_unit(p)[0]: p for p in get_calculator(name).params}
    args: dict[str, Any] = {}
    for key, value in inputs.items():
        quantity, token = split_unit(key)
        if key in params.values():
            args[key] = value
        elif quantity in params:
            target = split_unit(params[quantity])[1]
            args[params[quantity]] = convert(value, token, target, quantity)
        else:
            raise ValueError(f"input {key!r} matches no argument of calculator {name!r}")
    return args


# --- unit conversions as calculators ---------------------------------------------------------
@register("lb_to_kg", unit="kg", title="weight in kilograms")
def lb_to_kg(weight_lb: float) -> float:
    """Pounds to kilograms (× 0.45359237, exact). Raises ``ValueError`` if weight_lb < 0."""
    return _non_negative("weight_lb", weight_lb) * KG_PER_LB


def kg_to_lb(weight_kg: float) -> float:
    """Kilograms to pounds (÷ 0.45359237). Raises ``ValueError`` if weight_kg < 0."""
    return _non_negative("weight_kg", weight_kg) / KG_PER_LB


@register("in_to_cm", unit="cm", title="height in centimetres")
def in_to_cm(height_in: float) -> float:
    """Inches to centimetres (× 2.54, exact). Raises ``ValueError`` if height_in < 0."""
    return _non_negative("height_in", height_in) * CM_PER_IN


def cm_to_in(height_cm: float) -> float:
    """Centimetres to inches (÷ 2.54). Raises ``ValueError`` if height_cm < 0."""
    return _non_negative("height_cm", height_cm) / CM_PER_IN


@register("fahrenheit_to_celsius", unit="°C", title="temperature in degrees Celsius")
def fahrenheit_to_celsius(temp_f: float) -> float:
    """°F to °C: (F − 32) × 5/9. Raises ``ValueError`` for a non-finite value."""
    return (_finite("temp_f", temp_f) - 32.0) * 5.0 / 9.0


def celsius_to_fahrenheit(temp_c: float) -> float:
    """°C to °F: C × 9/5 + 32. Raises ``ValueError`` for a non-finite value."""
    return _finite("temp_c", temp_c) * 9.0 / 5.0 + 32.0


@register("glucose_mg_dl_to_mmol_l", unit="mmol/L", title="glucose in mmol/L")
def glucose_mg_dl_to_mmol_l(glucose_mg_dl: float) -> float:
    """Glucose mg/dL to mmol/L (÷ 18.0156, from 180.156 g/mol; ≈ × 0.0555).

    Raises ``ValueError`` if glucose_mg_dl < 0.
    """
    return _non_negative("glucose_mg_dl", glucose_mg_dl) / GLUCOSE_MG_DL_PER_MMOL_L


def glucose_mmol_l_to_mg_dl(glucose_mmol_l: float) -> float:
    """Glucose mmol/L to mg/dL (× 18.0156). Raises ``ValueError`` if glucose_mmol_l < 0."""
    return _non_negative("glucose_mmol_l", glucose_mmol_l) * GLUCOSE_MG_DL_PER_MMOL_L


@register("creatinine_mg_dl_to_umol_l", unit="µmol/L", title="creatinine in µmol/L")
def creatinine_mg_dl_to_umol_l(creatinine_mg_dl: float) -> float:
    """Creatinine mg/dL to µmol/L (× 88.4). Raises ``ValueError`` if creatinine_mg_dl < 0."""
    return _non_negative("creatinine_mg_dl", creatinine_mg_dl) * CREATININE_UMOL_L_PER_MG_DL


def creatinine_umol_l_to_mg_dl(creatinine_umol_l: float) -> float:
    """Creatinine µmol/L to mg/dL (÷ 88.4). Raises ``ValueError`` if creatinine_umol_l < 0."""
    return _non_negative("creatinine_umol_l", creatinine_umol_l) / CREATININE_UMOL_L_PER_MG_DL


@register("calcium_mg_dl_to_mmol_l", unit="mmol/L", title="calcium in mmol/L")
def calcium_mg_dl_to_mmol_l(calcium_mg_dl: float) -> float:
    """Total calcium mg/dL to mmol/L (÷ 4.008). Raises ``ValueError`` if calcium_mg_dl < 0."""
    return _non_negative("calcium_mg_dl", calcium_mg_dl) / CALCIUM_MG_DL_PER_MMOL_L


def calcium_mmol_l_to_mg_dl(calcium_mmol_l: float) -> float:
    """Total calcium mmol/L to mg/dL (× 4.008). Raises ``ValueError`` if calcium_mmol_l < 0."""
    return _non_negative("calcium_mmol_l", calcium_mmol_l) * CALCIUM_MG_DL_PER_MMOL_L


# --- clinical formulas -----------------------------------------------------------------------
@register("bmi", unit="kg/m^2", title="body mass index (BMI)")
def bmi(weight_kg: float, height_m: float) -> float:
    """Body mass index = weight (kg) / height (m)², in kg/m².

    Raises ``ValueError`` if weight_kg or height_m is not > 0.
    """
    weight_kg, height_m = _positive("weight_kg", weight_kg), _positive("height_m", height_m)
    return weight_kg / height_m**2


@register("mean_arterial_pressure", unit="mmHg", title="mean arterial pressure (MAP)")
def mean_arterial_pressure(sbp_mmhg: float, dbp_mmhg: float) -> float:
    """Mean arterial pressure = (SBP + 2·DBP) / 3, in mmHg (DBP + one third of pulse pressure).

    Raises ``ValueError`` if a pressure is not > 0 or dbp_mmhg exceeds sbp_mmhg.
    """
    sbp, dbp = _positive("sbp_mmhg", sbp_mmhg), _positive("dbp_mmhg", dbp_mmhg)
    if dbp > sbp:
        raise ValueError(f"dbp_mmhg ({dbp}) must not exceed sbp_mmhg ({sbp})")
    return (sbp + 2.0 * dbp) / 3.0


@register("anion_gap", unit="mEq/L", title="serum anion gap")
def anion_gap(na_meq_l: float, cl_meq_l: float, hco3_meq_l: float,
              k_meq_l: float | None = None) -> float:
    """Anion gap = Na − (Cl + HCO3), plus K when ``k_meq_l`` is given; mEq/L (= mmol/L).

    Raises ``ValueError`` if na_meq_l is not > 0 or another ion is negative.
    """
    gap = _positive("na_meq_l", na_meq_l) - (
        _non_negative("cl_meq_l", cl_meq_l) + _non_negative("hco3_meq_l", hco3_meq_l))
    return gap if k_meq_l is None else gap + _non_negative("k_meq_l", k_meq_l)


@register("corrected_calcium", unit="mg/dL", title="albumin-corrected calcium")
def corrected_calcium(calcium_mg_dl: float, albumin_g_dl: float,
                      normal_albumin_g_dl: float = 4.0, slope: float = 0.8) -> float:
    """Albumin-corrected total calcium, conventional units: Ca + slope·(normal − albumin).

    Takes calcium in mg/dL and albumin in g/dL; returns mg/dL. The default slope 0.8 mg/dL
    per g/dL is the widely used clinical form; Payne et al. (BMJ 1973;4:643) derived
    ``Ca − albumin + 4.0`` (slope 1.0). SI form: :func:`corrected_calcium_si`.
    Raises ``ValueError`` if calcium_mg_dl or albumin_g_dl is not > 0.
    """
    ca, alb = _positive("calcium_mg_dl", calcium_mg_dl), _positive("albumin_g_dl", albumin_g_dl)
    normal = _positive("normal_albumin_g_dl", normal_albumin_g_dl)
    return ca + _finite("slope", slope) * (normal - alb)


@register("corrected_calcium_si", unit="mmol/L", title="albumin-corrected calcium (SI)")
def corrected_calcium_si(calcium_mmol_l: float, albumin_g_l: float,
                         normal_albumin_g_l: float = 40.0, slope: float = 0.02) -> float:
    """Albumin-corrected calcium, SI units: Ca (mmol/L) + 0.02·(40 − albumin g/L), in mmol/L.

    0.02 mmol/L per g/L equals 0.8 mg/dL per g/dL (× 4.008 × 10 = 0.80), the SI twin of
    :func:`corrected_calcium`. Raises ``ValueError`` if calcium or albumin is not > 0.
    """
    ca, alb = _positive("calcium_mmol_l", calcium_mmol_l), _positive("albumin_g_l", albumin_g_l)
    normal = _positive("normal_albumin_g_l", normal_albumin_g_l)
    return ca + _finite("slope", slope) * (normal - alb)


@register("creatinine_clearance", unit="mL/min", title="creatinine clearance (Cockcroft-Gault)")
def creatinine_clearance_cockcroft_gault(age_years: float, weight_kg: float,
                                         creatinine_mg_dl: float, sex: str) -> float:
    """Cockcroft–Gault creatinine clearance, mL/min (Nephron 1976;16:31).

    (140 − age) × weight (kg) / (72 × serum creatinine mg/dL), × 0.85 if female.
    Raises ``ValueError`` if age_years is not in [18, 120], weight_kg or creatinine_mg_dl is
    not > 0, or sex is not 'male'/'female'.
    """
    age = _finite("age_years", age_years)
    if not 18 <= age <= 120:
        raise ValueError(f"age_years must be in [18, 120] (adult formula), got {age}")
    weight, scr = _positive("weight_kg", weight_kg), _positive("creatinine_mg_dl", creatinine_mg_dl)
    clearance = (140.0 - age) * weight / (72.0 * scr)
    return clearance * 0.85 if _sex(sex) == "female" else clearance


def rr_interval_s(heart_rate_bpm: float) -> float:
    """RR interval in seconds = 60 / heart rate. Raises ``ValueError`` if heart_rate_bpm <= 0."""
    return 60.0 / _positive("heart_rate_bpm", heart_rate_bpm)


@register("qtc_bazett", unit="ms", title="corrected QT interval (Bazett)")
def qtc_bazett(qt_ms: float, heart_rate_bpm: float) -> float:
    """Bazett QTc = QT / sqrt(RR in seconds), RR = 60 / HR; QT and result in ms (Heart 1920;7:353).

    Raises ``ValueError`` if qt_ms or heart_rate_bpm is not > 0.
    """
    return _positive("qt_ms", qt_ms) / math.sqrt(rr_interval_s(heart_rate_bpm))


@register("cha2ds2_vasc", unit="points", title="CHA2DS2-VASc score")
def cha2ds2_vasc(age_years: float, sex: str, chf: bool = False, hypertension: bool = False,
                 diabetes: bool = False, stroke_tia: bool = False,
                 vascular_disease: bool = False) -> int:
    """CHA2DS2-VASc stroke-risk score in atrial fibrillation, 0–9 points (Lip et al. 2010).

    C heart failure/LV dysfunction 1, H hypertension 1, A2 age ≥ 75 2, D diabetes 1,
    S2 prior stroke/TIA/thromboembolism 2, V vascular disease (prior MI, PAD, aortic plaque) 1,
    A age 65–74 1, Sc female sex 1. Returns an int. Raises ``ValueError`` if age_years is
    negative or sex is not 'male'/'female'.
    """
    age = _non_negative("age_years", age_years)
    age_points = 2 if age >= 75 else 1 if age >= 65 else 0
    return (age_points + int(_sex(sex) == "female") + int(bool(chf)) + int(bool(hypertension))
            + int(bool(diabetes)) + 2 * int(bool(stroke_tia)) + int(bool(vascular_disease)))


@register("ideal_body_weight", unit="kg", title="ideal body weight (Devine)")
def ideal_body_weight_devine(height_in: float, sex: str) -> float:
    """Devine ideal body weight, kg: 50 (male) or 45.5 (female) + 2.3 per inch over 60 in.

    Devine, Drug Intell Clin Pharm 1974;8:650. Below 60 in the line is extrapolated.
    Raises ``ValueError`` if height_in is not > 0 or sex is not 'male'/'female'.
    """
    base = 50.0 if _sex(sex) == "male" else 45.5
    return base + 2.3 * (_positive("height_in", height_in) - 60.0)


@register("bsa_mosteller", unit="m^2", title="body surface area (Mosteller)")
def bsa_mosteller(height_cm: float, weight_kg: float) -> float:
    """Mosteller body surface area, m² = sqrt(height cm × weight kg / 3600) (NEJM 1987;317:1098).

    Raises ``ValueError`` if height_cm or weight_kg is not > 0.
    """
    return math.sqrt(_positive("height_cm", height_cm) * _positive("weight_kg", weight_kg) / 3600.0)


@register("serum_osmolality", unit="mOsm/kg", title="calculated serum osmolality")
def serum_osmolality(na_meq_l: float, glucose_mg_dl: float, bun_mg_dl: float) -> float:
    """Calculated serum osmolality, mOsm/kg = 2·Na + glucose/18 + BUN/2.8 (conventional units).

    SI form: 2·Na + glucose (mmol/L) + urea (mmol/L). Raises ``ValueError`` if na_meq_l is not
    > 0 or glucose_mg_dl / bun_mg_dl is negative.
    """
    na, glucose = _positive("na_meq_l", na_meq_l), _non_negative("glucose_mg_dl", glucose_mg_dl)
    return 2.0 * na + glucose / 18.0 + _non_negative("bun_mg_dl", bun_mg_dl) / 2.8


def alveolar_po2(paco2_mmhg: float, fio2_fraction: float = 0.21, patm_mmhg: float = 760.0,
                 ph2o_mmhg: float = 47.0, rq: float = 0.8) -> float:
    """Alveolar gas equation (simplified), mmHg: PAO2 = FiO2·(Patm − PH2O) − PaCO2/RQ.

    Raises ``ValueError`` if fio2_fraction is not in (0, 1], patm_mmhg <= ph2o_mmhg, or
    paco2_mmhg / rq is not > 0.
    """
    fio2 = _positive("fio2_fraction", fio2_fraction)
    if fio2 > 1:
        raise ValueError(f"fio2_fraction must be a fraction in (0, 1], got {fio2}")
    patm, ph2o = _positive("patm_mmhg", patm_mmhg), _non_negative("ph2o_mmhg", ph2o_mmhg)
    if patm <= ph2o:
        raise ValueError(f"patm_mmhg ({patm}) must exceed ph2o_mmhg ({ph2o})")
    return fio2 * (patm - ph2o) - _positive("paco2_mmhg", paco2_mmhg) / _positive("rq", rq)


@register("aa_gradient", unit="mmHg", title="alveolar-arterial (A-a) oxygen gradient")
def aa_gradient(pao2_mmhg: float, paco2_mmhg: float, fio2_fraction: float = 0.21,
                patm_mmhg: float = 760.0, ph2o_mmhg: float = 47.0, rq: float = 0.8) -> float:
    """A–a O2 gradient, mmHg = PAO2 (:func:`alveolar_po2`) − arterial PaO2.

    Raises ``ValueError`` if pao2_mmhg is not > 0 or as :func:`alveolar_po2`.
    """
    pao2 = _positive("pao2_mmhg", pao2_mmhg)
    return alveolar_po2(paco2_mmhg, fio2_fraction, patm_mmhg, ph2o_mmhg, rq) - pao2
