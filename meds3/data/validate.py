"""Checks every loaded question passes before any stage sees it: text that can be written as
UTF-8, nesting a JSON writer can handle, and a gold answer its verifier can check.

A question that fails here would otherwise fail later, at the same place on every rerun: the
verifier raising in the middle of a search, or the tree store unable to write its shard.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from meds3.data.errors import FieldError
from meds3.data.question import MedQuestion

#: Deepest nesting of lists and dicts accepted in a record (real datasets nest a few levels).
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def find_bad_value(value: Any, field: str, max_depth: int = MAX_DEPTH) -> Optional[tuple[str, str]]:
    """The first place in ``value`` that cannot be stored: ``(field path, reason)`` or ``None``.

    Takes any JSON-like value and the name of the field it came from. Looks for strings (keys
    too) holding a lone UTF-16 surrogate, which no UTF-8 writer accepts, and for nesting deeper
    than ``max_depth``. Iterative, so a deep value never raises ``RecursionError`` here.
    """
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match:
                return where, (f"holds a lone surrogate {match.group()!r} at character {match.start()}, "
                               "which cannot be written as UTF-8; fix the \\u escapes of the source")
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                return where, f"is nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, sub in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return where, f"has a key {key!r} holding a lone surrogate, which cannot be written as UTF-8"
                stack.append((sub, f"{where}.{key}" if isinstance(item, dict) else f"{where}[{key}]", depth + 1))
    return None


def validate_question(question: MedQuestion) -> None:
    """Check that ``question`` can be stored and checked by its verifier.

    Returns ``None``; raises :class:`FieldError` naming the field (the loader adds file and
    line) for text that cannot be written as UTF-8, over-deep metadata, or a gold answer or
    answer setting (``tolerance``, ``range``, ``f1_threshold``) its task type's verifier
    rejects: a numeric gold ``"abc"``, ``NaN`` or ``Infinity``, a tolerance ``NaN``,
    ``Infinity`` or ``"lots"``.
    """
    from meds3.verify.core import get_verifier  # why: meds3.verify imports meds3.data

    for field in ("id", "question", "answer", "options", "domain", "source", "metadata"):
        bad = find_bad_value(getattr(question, field), field)
        if bad is not None:
            raise FieldError(*bad)
    try:
        get_verifier(question.task_type).validate(question)
    except ValueError as exc:
        message = str(exc)
        prefix = f"question {question.id!r}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        raise FieldError(None, f"question {question.id!r} cannot be verified: {message}") from None
