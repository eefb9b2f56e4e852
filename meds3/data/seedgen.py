"""Seeded generator of clinical-calculation questions with exact, rule-checkable answers.

Levels: ``easy`` gives the inputs in the formula's units; ``medium`` needs a unit conversion
(lb, ft/in, µmol/L, kPa, ...); ``hard`` is a short vignette with distractor findings and, where
the calculator has alternative units, conversions before the formula. Question ``i`` cycles
through calculators, then levels, so every pair appears once ``n >= #calculators × #levels``;
its inputs come from its own ``random.Random`` seeded by ``(seed, i)``, so a longer run extends
a shorter one with the same questions. What each calculator's questions look like is data: one
:class:`~meds3.data.calc_specs.CalcSpec` per calculator in :mod:`meds3.data.calc_specs`.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from meds3.data import calculators as calc
from meds3.data.calc_specs import SPECS, AltUnit, Built, CalcSpec, InputField, fmt
from meds3.data.question import MedQuestion
from meds3.io import atomic_open

LEVELS = ("easy", "medium", "hard")
SOURCE = "meds3-clinical-calc"
DOMAIN = "clinical_calculation"
#: Calculators the generator can ask about, in generation order (the built-in specs).
CALCULATOR_NAMES: tuple[str, ...] = tuple(SPECS)


def _with_unit(number: str, unit: str) -> str:
    """"72.4 kg", "40%", "0.21" (no unit)."""
    return f"{number}%" if unit == "%" else f"{number} {unit}" if unit else number


def _show(value: float, unit: str, alt: AltUnit | None = None) -> str:
    """A given value as the question shows it ("5 ft 7 in" for a feet display)."""
    if alt is not None and alt.feet:
        feet, inches = divmod(int(value), 12)
        return f"{feet} ft {inches} in"
    return _with_unit(fmt(value), unit)


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


def _present(spec: CalcSpec, level: str, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any],
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


def _conversion_step(f: InputField, alt: AltUnit, value: float, result: float) -> str:
    """One "convert X to the formula's unit" step with the arithmetic shown."""
    text = f"Convert {f.label} to {f.unit or 'a fraction'}: "
    if alt.feet:
        feet, inches = divmod(int(value), 12)
        text += f"{feet} ft {inches} in = {feet} × 12 + {inches} = {int(value)} in"
        if f.token == "in":
            return text + "."
        text += "; "
    op, k = calc.conversion_rule(alt.token, f.token, f.quantity)
    given, got = _with_unit(fmt(value), alt.unit), _with_unit(fmt(result), f.unit)
    if k == 1.0:  # mmol/L -> mEq/L for a monovalent ion
        return text + f"{given} = {got} (monovalent ion: 1 mmol/L = 1 mEq/L)."
    return text + f"{given} {'×' if op == 'mul' else '÷'} {fmt(k, 8)} = {got}."


def build_formula(spec: CalcSpec, level: str, rng: random.Random) -> Built:
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


def _make_question(spec: CalcSpec, level: str, seed: int, i: int) -> MedQuestion:
    """Build question ``i`` of a run; every random draw comes from its own generator."""
    rng = random.Random(f"meds3-calc:{seed}:{i}")  # str seeds hash with sha512: stable across runs
    text, given, args, steps = (spec.build or build_formula)(spec, level, rng)
    info = calc.get_calculator(spec.calculator)
    value = info.func(**args)
    steps += spec.work(args, value)
    answer = f"{value:.{spec.decimals}f}"
    answer = f"{0:.{spec.decimals}f}" if float(answer) == 0 else answer  # never "-0.0"
    width = max(spec.abs_tol, spec.rel_tol * abs(float(answer)))
    unit = info.unit
    done = "The" if spec.exact_score else f"Rounded {spec.rounding.split(' ', 1)[1]}, the"
    steps.append(f"{done} {info.title} is {answer} {unit}. The answer is {answer} {unit}.")
    question = f"{text} Give the answer in {unit}, {spec.rounding}."
    return MedQuestion(
        id=f"calc_{seed}_{i:05d}_{spec.calculator}", question=question, options={}, answer=answer,
        task_type="numeric", domain=DOMAIN, source=SOURCE,
        metadata={"unit": unit, "tolerance": spec.rel_tol, "abs_tolerance": spec.abs_tol,
                  "range": [round(float(answer) - width, 6), round(float(answer) + width, 6)],
                  "calculator": spec.calculator, "level": level, "inputs": given,
                  "decimals": spec.decimals,
                  "solution": "\n\n".join(f"Step {k}: {s}" for k, s in enumerate(steps, 1))})


def generate_calc_questions(n: int, seed: int = 0, levels: Sequence[str] = LEVELS,
                            calculators: Iterable[str] | None = None) -> list[MedQuestion]:
    """Generate ``n`` clinical-calculation questions, reproducibly.

    Takes the count, a seed, the levels to cycle through (subset of :data:`LEVELS`) and the
    calculator names (default: every spec in :data:`meds3.data.calc_specs.SPECS`). Returns ``MedQuestion``s with
    ``task_type="numeric"``; same arguments give identical output. Raises ``ValueError`` for
    a negative ``n``, an unknown level or calculator, or an empty list of either.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    levels = tuple(levels)
    names = tuple(SPECS if calculators is None else calculators)  # SPECS read live: a spec added later counts
    bad_levels = [lv for lv in levels if lv not in LEVELS]
    bad_names = [c for c in names if c not in SPECS]
    if not levels or bad_levels:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {list(levels)}")
    if not names or bad_names:
        raise ValueError(f"unknown calculators {bad_names or '(none given)'}; known: {list(SPECS)}")
    return [_make_question(SPECS[names[i % len(names)]], levels[(i // len(names)) % len(levels)], seed, i)
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
