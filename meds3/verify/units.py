"""Unit spelling and the conversions that need no analyte.

Only scale changes within one dimension are converted (mass, volume, time, length,
amount of substance) and quotients of them (``mg/dL`` -> ``g/L``, ``mL/min`` -> ``L/h``).
``mg/dL`` <-> ``mmol/L`` needs the analyte's molar mass and is never converted.
"""

from __future__ import annotations

import re
import unicodedata

_SCALES: dict[str, tuple[str, float]] = {}
for _dim, _table in {
    "mass": {"kg": 1e3, "g": 1.0, "gm": 1.0, "gram": 1.0, "grams": 1.0, "mg": 1e-3, "ug": 1e-6, "mcg": 1e-6,
             "ng": 1e-9},
    "volume": {"l": 1.0, "liter": 1.0, "liters": 1.0, "litre": 1.0, "litres": 1.0, "dl": 0.1, "ml": 1e-3,
               "cc": 1e-3, "ul": 1e-6},
    "time": {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3,
             "millisecond": 1e-3, "milliseconds": 1e-3, "min": 60.0, "mins": 60.0, "minute": 60.0,
             "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
             "day": 86400.0, "days": 86400.0, "week": 604800.0, "weeks": 604800.0},
    "length": {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6},
    "amount": {"mol": 1.0, "mmol": 1e-3, "umol": 1e-6, "nmol": 1e-9},
}.items():
    for _name, _scale in _table.items():
        _SCALES[_name] = (_dim, _scale)

_FACTOR = re.compile(r"([a-z]+)(-?\d)?")
_PERCENT = frozenset({"%", "percent", "percentage", "percentagepoints", "percent."})


def normalize_unit(unit: str | None) -> str | None:
    """Spell a unit one way: NFKC, lowercase, µ/μ -> u, no spaces, no ``^``, no trailing
    period; ``percent`` -> ``%``. ``"kg/m²"``, ``"kg/m^2"`` and ``"KG/M2"`` all give
    ``"kg/m2"``. Returns ``None`` for ``None`` or a blank unit."""
    if unit is None:
        return None
    text = unicodedata.normalize("NFKC", str(unit)).lower()
    text = text.replace("µ", "u").replace("μ", "u").replace("^", "").replace("per cent", "percent")
    text = re.sub(r"\s+", "", text).rstrip(".")
    if not text:
        return None
    return "%" if text in _PERCENT else text


def _dimensions(unit: str) -> tuple[tuple[tuple[str, int], ...], float] | None:
    """Split ``a·b/c/d`` into its dimension signature and scale to base units, or ``None``
    when any factor is unknown (``mmHg``, ``1.73m2``, ``points``)."""
    dims: dict[str, int] = {}
    scale = 1.0
    for i, part in enumerate(unit.split("/")):
        sign = 1 if i == 0 else -1
        for factor in re.split(r"[·*]", part):
            if not factor:
                continue
            match = _FACTOR.fullmatch(factor)
            if not match or match.group(1) not in _SCALES:
                return None
            dim, base = _SCALES[match.group(1)]
            power = sign * int(match.group(2) or 1)
            dims[dim] = dims.get(dim, 0) + power
            scale *= base ** power
    return tuple(sorted((d, p) for d, p in dims.items() if p)), scale


def convert(value: float, from_unit: str | None, to_unit: str | None) -> float | None:
    """Express ``value`` given in ``from_unit`` in ``to_unit``.

    Takes a number and two units (any spelling); returns the converted number, ``value``
    itself when the units are spelled the same, or ``None`` when either is missing,
    unknown or of another dimension (``mg`` vs ``mL``, ``mg/dL`` vs ``mmol/L``).
    """
    source, target = normalize_unit(from_unit), normalize_unit(to_unit)
    if source is None or target is None:
        return None
    if source == target:
        return value
    a, b = _dimensions(source), _dimensions(target)
    if a is None or b is None or a[0] != b[0] or not a[0]:
        return None
    try:
        return value * a[1] / b[1]
    except (OverflowError, ZeroDivisionError):
        return None
