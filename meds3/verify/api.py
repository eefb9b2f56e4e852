"""The two entry points: :func:`verify` and :func:`extract_answer`."""

from __future__ import annotations

import logging
from typing import Any

from meds3.data.question import MedQuestion
from meds3.verify.core import Verdict, get_verifier, known_options
from meds3.verify.statements import coerce_text

logger = logging.getLogger(__name__)


def verify(text: object, question: MedQuestion, **options: Any) -> Verdict:
    """Check a model output against a question's gold answer.

    Takes the model ``text`` (anything: ``None``, bytes, huge or garbled strings are
    fine), the question, and keyword options of the question's verifier
    (``tolerance``, ``abs_tolerance``, ``range`` for numeric; ``f1_threshold`` for span),
    which override ``question.metadata``. Returns a :class:`Verdict`: ``correct`` True,
    False, or None when no answer could be found (unverifiable), ``extracted`` (the
    normalized answer) and ``reason``.

    Never raises because of ``text`` (an internal error on odd text is logged and gives
    an unverifiable verdict). Raises ``ValueError``, before reading the text, for a bad
    question (unknown task type, gold answer the verifier cannot check, bad tolerance
    metadata), an option no verifier knows, or a bad option value.
    """
    unknown = sorted(set(options) - known_options())
    if unknown:
        raise ValueError(f"unknown verify option(s) {unknown}; known: {sorted(known_options())}")
    verifier = get_verifier(question.task_type)
    verifier.validate(question, **options)
    text = coerce_text(text)
    try:
        return verifier.verify(text, question, **options)
    except Exception as exc:  # why: a verifier bug on odd text must not kill a search over thousands of trees
        logger.warning("verifier %r failed on question %r: %r", verifier.name, question.id, exc, exc_info=True)
        return Verdict(None, None, f"verifier error: {type(exc).__name__}")


def extract_answer(text: object, question: MedQuestion) -> str | None:
    """Return the normalized answer stated in ``text`` for ``question``, or ``None``.

    Takes any model output and the question (its gold answer is not needed, so it works
    for unlabelled questions, e.g. to group samples when voting). Returns what
    :attr:`Verdict.extracted` would be: an option letter, ``"yes"``/``"no"``/``"maybe"``,
    a number as ``str(float)``, or a normalized text. Raises ``ValueError`` only for an
    unknown task type.
    """
    verifier = get_verifier(question.task_type)
    try:
        return verifier.extract(coerce_text(text), question).answer
    except Exception as exc:  # why: same contract as verify: model text never raises
        logger.warning("extraction %r failed on question %r: %r", verifier.name, question.id, exc, exc_info=True)
        return None
