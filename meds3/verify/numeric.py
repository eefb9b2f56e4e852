"""Numeric answers (clinical calculators): parse a number with its unit, compare with tolerance.

Decisions (also in :class:`NumericVerifier`'s docstring):

* Tolerance: correct iff ``lo <= x <= hi`` when ``range: [lo, hi]`` is given (MedCalc-Bench
  style), else ``|x - gold| <= max(abs_tolerance, tolerance * |gold|)``; defaults
  ``tolerance=0.01``, ``abs_tolerance=0``. Keyword options to ``verify`` override
  ``question.metadata``. Boundaries are inclusive, with 1e-9 relative slack so float
  rounding of a value exactly on the boundary does not flip it.
* A stated range ("between 20 and 25", "20-25", "20 to 25") is unverifiable: taking the
  midpoint would reward hedging.
* Two different numbers ("24 or 25", "120/80") are unverifiable; "approximately 7",
  "≈ 98", "~7" are read as the number.
* Percent: with gold unit ``%`` (``metadata["unit"]`` or a ``%`` in the gold answer),
  "12.5%" is 12.5. With no gold unit, "12.5%" is extracted as ``"12.5%"`` and is correct
  if either 12.5 or 0.125 matches the gold: the gold's convention is unknown and the
  two readings differ 100-fold, so accepting either cannot confuse two answers.
* Units: a stated unit that converts to the gold unit by scale alone (g/mg, s/ms,
  mL/min vs L/h, ...) is converted; any other unit is ignored and the number compared
  as stated (the unit never breaks parsing).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from meds3.data.question import MedQuestion
from meds3.verify.core import Extraction, Verdict, Verifier, register_verifier
from meds3.verify.statements import (
    AMBIGUOUS,
    FOUND,
    NOTHING,
    Parsed,
    answer_statements,
    clean_text,
    first_clause,
    last_line,
    parse_negation,
    read_last_statement,
)
from meds3.verify.units import convert, normalize_unit

#: Relative tolerance used when neither ``verify`` options nor metadata give one.
DEFAULT_TOLERANCE = 0.01
#: Absolute tolerance used when neither ``verify`` options nor metadata give one.
DEFAULT_ABS_TOLERANCE = 0.0
_SLACK = 1e-9

_NUMBER = re.compile(
    r"""(?<![A-Za-z0-9.^_])
        (?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-+]?\.\d+)
        (?P<exp>[eE][-+]?\d{1,4}(?![A-Za-z0-9]))?
        (?:[ \t]*[×xX*·][ \t]*10[ \t]*(?:(?:\^|\*\*)[ \t]*\(?[ \t]*(?P<pow>[-+]?\d{1,4})[ \t]*\)?
                                       |(?P<pow2>[-+]\d{1,4})))?""",
    re.VERBOSE,
)
_UNIT = re.compile(
    r"""[ \t]*(?P<unit>%|per[ ]?cent\b|percent(?:age)?\b
        |/?[A-Za-zµμ°Ω]+(?:\^?-?\d)?
         (?:[ \t]*[/·*][ \t]*(?:\d+(?:\.\d+)?[ \t]*)?[A-Za-zµμ°Ω]+(?:\^?-?\d)?)*)""",
    re.VERBOSE,
)
_NOT_UNITS = frozenset({"or", "and", "to", "vs", "versus", "between", "x", "e"})
_SECOND = re.compile(r"""^\s*(?P<conn>-|–|—|to\b|and\b|or\b|/|,\s*(?:or\b|and\b)?)\s*
                         (?P<num>[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+)""", re.VERBOSE | re.IGNORECASE)
_PARENTHESES = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_JUNK = " \t*_\"'`:~≈"  # why: no "-" here, it is the sign of a negative answer


def _number_value(match: re.Match) -> float:
    """The float a :data:`_NUMBER` match denotes (``1,234.5``, ``1.2e-3``, ``1.2 × 10^3``)."""
    value = float(match.group("num").replace(",", "") + (match.group("exp") or ""))
    power = match.group("pow") or match.group("pow2")
    if power:
        try:
            value *= 10.0 ** int(power)
        except OverflowError:  # why: "1 × 10^9999" is a (wrong) answer, not a crash
            value = math.copysign(math.inf, value) if value else 0.0
    return value


class NumberRead(NamedTuple):
    """A number found in text: its ``value``, the ``unit`` written after it (``None`` if
    none), and the text ``before`` it and ``after`` number and unit."""

    value: float
    unit: str | None
    before: str
    after: str


def read_number(text: str) -> NumberRead | None:
    """Read the first number in ``text`` with the unit written after it.

    Takes a clause; returns a :class:`NumberRead`, or ``None`` when it holds no number.
    """
    match = _NUMBER.search(text)
    if not match:
        return None
    after = text[match.end():]
    unit = None
    unit_match = _UNIT.match(after)
    if unit_match and unit_match.group("unit").lower() not in _NOT_UNITS:
        unit = unit_match.group("unit")
        after = after[unit_match.end():]
    return NumberRead(_number_value(match), unit, text[:match.start()], after)


def _answer_clause(tail: str) -> str:
    """The part of a tail that holds the answer: its first clause, parentheses dropped,
    and only what follows the last ``=``/``≈`` when that holds a number."""
    clause = first_clause(tail)
    bare = _PARENTHESES.sub(" ", clause)
    if not _NUMBER.search(bare):
        bare = clause
    for sign in ("=", "≈"):
        if sign in bare and _NUMBER.search(bare.rsplit(sign, 1)[1]):
            bare = bare.rsplit(sign, 1)[1]
    return bare


def render(value: float, unit: str | None, gold_unit: str | None) -> tuple[str, str]:
    """Write a stated number in the gold unit as ``str(float)`` (or ``"12.5%"``, see the
    module notes); returns ``(answer, note)``."""
    stated = normalize_unit(unit)
    if stated == "%":
        return (repr(value), "") if gold_unit == "%" else (f"{value!r}%", "percent, gold has no unit")
    if stated and gold_unit and stated != gold_unit:
        converted = convert(value, stated, gold_unit)
        if converted is not None:
            return repr(converted), f"converted from {unit}"
        return repr(value), f"unit {unit} not convertible to {gold_unit}; compared as stated"
    return repr(value), ""


def parse_number_tail(tail: str, gold_unit: str | None = None) -> Parsed:
    """Read one number from a statement tail.

    Takes the tail and the gold unit (normalized, or ``None``); returns a
    :class:`Parsed` whose answer is the number in the gold unit as ``str(float)``
    (``"12.5%"`` for a percent against a unitless gold). A range or two different
    numbers give :data:`AMBIGUOUS`, "not 5" gives :data:`NEGATED`. Never raises.
    """
    negation = parse_negation(tail, lambda rest: parse_number_tail(rest, gold_unit))
    if negation is not None:
        return negation
    clause = _answer_clause(tail.lstrip(_JUNK))
    read = read_number(clause)
    if read is None:
        return Parsed(NOTHING)
    value, unit, before, after = read
    if re.match(r",\d", after):
        return Parsed(AMBIGUOUS, note="decimal comma or list")
    second = _SECOND.match(after)
    if second:
        conn = second.group("conn").strip(" ,").lower()
        other = second.group("num")
        if conn in ("-", "–", "—", "to") or (conn == "and" and "between" in before.lower()):
            return Parsed(AMBIGUOUS, note=f"range {value:g} to {other}")
        if conn == "/":
            return Parsed(AMBIGUOUS, note=f"ratio {value:g}/{other}")
        try:
            same = float(other.replace(",", "")) == value
        except ValueError:
            same = False
        if not same:
            return Parsed(AMBIGUOUS, note=f"{value:g}, {other}")
    answer, note = render(value, unit, gold_unit)
    return Parsed(FOUND, answer, note)


def gold_number(question: MedQuestion) -> tuple[float, str | None]:
    """Return the gold value and normalized gold unit of a numeric question.

    The unit is ``metadata["unit"]``, else one written in the answer (``"12.5%"``).
    Raises ``ValueError`` naming the question when the answer holds no number.
    """
    read = read_number(clean_text(str(question.answer)))
    if read is None:
        raise ValueError(f"question {question.id!r}: numeric answer {question.answer!r} is not a number")
    value, unit = read.value, read.unit
    if not math.isfinite(value):
        raise ValueError(f"question {question.id!r}: numeric answer {question.answer!r} is not a finite number")
    metadata = question.metadata if isinstance(question.metadata, dict) else {}
    return value, normalize_unit(metadata.get("unit") or unit)


def _setting(name: str, options: dict[str, Any], metadata: dict[str, Any], default: Any, question_id: str) -> Any:
    """Look an option up in ``verify`` options, then metadata, then the default; check it."""
    value = options.get(name)
    if value is None:
        value = metadata.get(name)
    if value is None:
        value = default
    if name == "range":
        if value is None:
            return None
        try:
            if isinstance(value, (str, bytes)) or any(isinstance(v, bool) for v in value):
                raise TypeError
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"question {question_id!r}: range must be [lo, hi] numbers, got {value!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"question {question_id!r}: range {value!r} must hold finite numbers")
        if not lo <= hi:
            raise ValueError(f"question {question_id!r}: range {value!r} has lo > hi")
        return lo, hi
    try:
        if isinstance(value, bool):
            raise TypeError  # why: float(True) is 1.0, a 100% tolerance nobody meant
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"question {question_id!r}: {name} must be a number, got {value!r}") from None
    if not number >= 0:
        raise ValueError(f"question {question_id!r}: {name} must be >= 0, got {value!r}")
    if not math.isfinite(number):  # why: an infinite tolerance makes every number correct
        raise ValueError(f"question {question_id!r}: {name} must be finite, got {value!r}")
    return number


def within(x: float, gold: float, tolerance: float, abs_tolerance: float,
           accepted: tuple[float, float] | None) -> tuple[bool, str]:
    """Decide whether ``x`` is close enough to ``gold``.

    Takes the value, the gold value, relative and absolute tolerances and an optional
    inclusive ``(lo, hi)`` range that replaces them; returns ``(correct, reason)``.
    Bounds are inclusive with 1e-9 relative slack for float rounding.
    """
    if accepted is not None:
        lo, hi = accepted
        slack = _SLACK * max(1.0, abs(lo), abs(hi))
        ok = lo - slack <= x <= hi + slack
        return ok, f"{x:g} {'within' if ok else 'outside'} accepted range [{lo:g}, {hi:g}]"
    allowed = max(abs_tolerance, tolerance * abs(gold))
    diff = abs(x - gold)
    ok = diff <= allowed + _SLACK * max(1.0, abs(gold))
    return ok, f"{x:g} is {diff:.4g} from gold {gold:g} ({'<=' if ok else '>'} allowed {allowed:.4g})"


@register_verifier("numeric")
class NumericVerifier(Verifier):
    """Checks a number against ``question.answer`` (a numeric string) with tolerance.

    Reading: the last explicit statement holding a number ("The answer is 24.2 kg/m²",
    "Answer: ≈ 98 mL/min", "\\boxed{1.2 \\times 10^{3}}"), taking the value after the
    last "=" in it; without one, a final line that is only a number (and unit).
    Numbers: "1,234.5", "-3", "1.2e-3", "1.2 × 10^3", "12.5%". Checking: ``range``
    [lo, hi] when given, else ``max(abs_tolerance, tolerance*|gold|)``; options
    ``tolerance``, ``abs_tolerance``, ``range`` override ``question.metadata``
    (defaults 0.01, 0, none). Ranges, two numbers, ratios and negated statements are
    unverifiable. Percent and unit rules: see :mod:`meds3.verify.numeric`.
    """

    option_names = frozenset({"tolerance", "abs_tolerance", "range"})

    def validate(self, question: MedQuestion, **options: Any) -> None:
        """Raise ``ValueError`` for a non-numeric answer or a bad tolerance/range in
        metadata or ``options``."""
        gold_number(question)
        self._settings(question, options)

    def _settings(self, question: MedQuestion, options: dict[str, Any]) -> tuple[float, float, Any]:
        """(tolerance, abs_tolerance, range) from options, metadata, defaults."""
        metadata = question.metadata if isinstance(question.metadata, dict) else {}
        return (_setting("tolerance", options, metadata, DEFAULT_TOLERANCE, question.id),
                _setting("abs_tolerance", options, metadata, DEFAULT_ABS_TOLERANCE, question.id),
                _setting("range", options, metadata, None, question.id))

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Return the stated number as ``str(float)`` in the gold unit (``"12.5%"`` for a
        percent against a unitless gold) or ``None`` with the reason; never raises on text."""
        try:
            gold_unit = gold_number(question)[1]
        except ValueError:  # why: extraction alone (voting on unlabelled questions) needs no gold
            metadata = question.metadata if isinstance(question.metadata, dict) else {}
            gold_unit = normalize_unit(metadata.get("unit"))
        text = clean_text(text)
        statements = answer_statements(text)
        found = read_last_statement(statements, lambda tail: parse_number_tail(tail, gold_unit))
        if found is not None:
            return found
        line = last_line(text).strip(_JUNK + ".")
        read = read_number(line)
        if read is not None and not (read.before + read.after).strip(" ."):
            answer, _ = render(read.value, read.unit, gold_unit)
            return Extraction(answer, "last line (no answer statement)")
        if statements:
            return Extraction(None, "no answer statement holds a number")
        return Extraction(None, "no answer statement found")

    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Compare a number (``str(float)``, or ``"x%"``) with the gold value under the tolerances."""
        gold, _ = gold_number(question)
        tolerance, abs_tolerance, accepted = self._settings(question, options)
        percent = answer.endswith("%")
        value = float(answer.rstrip("%"))
        readings = [value, value / 100] if percent else [value]
        results = [within(x, gold, tolerance, abs_tolerance, accepted) for x in readings]
        for (ok, reason), x in zip(results, readings):
            if ok:
                return Verdict(True, answer, reason + (f" (reading {answer} as {x:g})" if percent else ""))
        return Verdict(False, answer, results[0][1] + (" (either reading of the percent)" if percent else ""))
