"""Open text answers: normalized exact match (``exact``) and token F1 (``span``).

Both read the first clause of the last explicit answer statement ("The answer is 10 mg/kg,
given twice daily." -> "10 mg/kg"), dropping a trailing "because ..."/"which ..." clause.
``.extracted`` is the normalized token string (:func:`~meds3.verify.statements.answer_tokens`
joined by spaces, e.g. ``"10 mg kg"``) so equal answers compare equal when voting.
MedS3 used substring matching for open answers, which calls any long text containing the
gold word correct; token F1 with a threshold penalizes padding.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from meds3.data.question import MedQuestion
from meds3.verify.core import Extraction, Verdict, Verifier, register_verifier
from meds3.verify.statements import (
    AMBIGUOUS,
    FOUND,
    NOTHING,
    Parsed,
    answer_statements,
    answer_tokens,
    clean_text,
    first_clause,
    parse_negation,
    read_last_statement,
)

#: F1 at or above which a span answer is correct, unless options or metadata say otherwise.
DEFAULT_F1_THRESHOLD = 0.5
#: A whole response of at most this many tokens on one line, with no answer statement,
#: is taken as the bare answer ("high", "10 mg/kg").
BARE_ANSWER_TOKENS = 12

_JUNK = " \t*_\"'`:=-–—"
_TRAILING = re.compile(r",?\s+(?:because|since|as\s+(?:it|this|the|they)|which|indicating|suggesting|given\s+that|"
                       r"due\s+to|so\s+that)\b.*$", re.IGNORECASE | re.DOTALL)


def _alternatives(tokens: list[str], gold: list[str]) -> bool:
    """True when tokens read "X or Y" with different X and Y (and the gold has no "or")."""
    if "or" in gold or "or" not in tokens:
        return False
    parts, current = [], []
    for token in tokens + ["or"]:
        if token == "or":
            if current and current != ["either"]:
                parts.append(tuple(t for t in current if t != "either"))
            current = []
        else:
            current.append(token)
    return len(set(parts)) > 1


def parse_text_tail(tail: str, gold: list[str] | None = None) -> Parsed:
    """Read a free-text answer from a statement tail.

    Takes the tail and the gold tokens (``None`` if unknown); returns a :class:`Parsed`
    whose answer is the normalized token string of the tail's first clause, without a
    trailing "because ..." clause. "X or Y" (when the gold has no "or") is ambiguous,
    "not X" negated. Never raises.
    """
    negation = parse_negation(tail, lambda rest: parse_text_tail(rest, gold))
    if negation is not None:
        return negation
    clause = _TRAILING.sub("", first_clause(tail.lstrip(_JUNK)))
    tokens = answer_tokens(clause)
    if not tokens:
        return Parsed(NOTHING)
    if _alternatives(tokens, gold or []):
        return Parsed(AMBIGUOUS, note=clause.strip()[:60])
    return Parsed(FOUND, " ".join(tokens))


def extract_text(text: str, question: MedQuestion) -> Extraction:
    """Read the open answer from model ``text``: the last statement, else a bare short reply.

    Returns an :class:`Extraction` with the normalized token string; never raises on text.
    """
    text = clean_text(text)
    gold = answer_tokens(str(question.answer or ""))
    statements = answer_statements(text)
    found = read_last_statement(statements, lambda tail: parse_text_tail(tail, gold))
    if found is not None:
        return found
    if not statements:
        stripped = text.strip()
        if stripped and "\n" not in stripped and len(answer_tokens(stripped)) <= BARE_ANSWER_TOKENS:
            parsed = parse_text_tail(stripped, gold)
            if parsed.status == FOUND:
                return Extraction(parsed.answer, "whole reply is a short bare answer")
        return Extraction(None, "no answer statement found")
    return Extraction(None, "no answer statement states an answer")


def token_f1(predicted: list[str], gold: list[str]) -> float:
    """SQuAD token F1 between two token lists (multiset overlap); 0.0 when either is empty."""
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _gold_tokens(question: MedQuestion) -> list[str]:
    """Normalized gold tokens; raises ``ValueError`` naming the question when there are none."""
    tokens = answer_tokens(str(question.answer or ""))
    if not tokens:
        raise ValueError(f"question {question.id!r}: answer {question.answer!r} is empty after normalization")
    return tokens


@register_verifier("exact")
class ExactVerifier(Verifier):
    """Correct iff the stated answer equals the gold after normalization (NFKC, case,
    punctuation, whitespace, articles; ``3.0`` = ``3``; ``10mg`` = ``10 mg``). Reading:
    the last explicit statement's first clause, or a bare one-line reply of at most 12
    tokens when there is no statement. No keyword options."""

    def validate(self, question: MedQuestion, **options: Any) -> None:
        """Raise ``ValueError`` when the gold answer normalizes to nothing."""
        _gold_tokens(question)

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Return the normalized stated answer or ``None`` with the reason; never raises on text."""
        return extract_text(text, question)

    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Compare normalized ``answer`` with the normalized gold answer."""
        gold = " ".join(_gold_tokens(question))
        if answer == gold:
            return Verdict(True, answer, f"{answer!r} matches gold after normalization")
        return Verdict(False, answer, f"{answer!r} but gold is {gold!r}")


@register_verifier("span")
class SpanVerifier(Verifier):
    """Correct iff token F1 between the stated answer and the gold is at least a
    threshold: ``f1_threshold`` keyword option, else ``metadata["f1_threshold"]``, else
    0.5. Reading as for ``exact``; the reason reports the F1."""

    option_names = frozenset({"f1_threshold"})

    def validate(self, question: MedQuestion, **options: Any) -> None:
        """Raise ``ValueError`` for an empty gold answer or a threshold (metadata or
        ``options``) outside [0, 1]."""
        _gold_tokens(question)
        self._threshold(question, options)

    @staticmethod
    def _threshold(question: MedQuestion, options: dict[str, Any]) -> float:
        """The F1 threshold from options, metadata or the default; checked to lie in [0, 1]."""
        metadata = question.metadata if isinstance(question.metadata, dict) else {}
        value = options.get("f1_threshold")
        if value is None:
            value = metadata.get("f1_threshold", DEFAULT_F1_THRESHOLD)
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"question {question.id!r}: f1_threshold must be a number, got {value!r}") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"question {question.id!r}: f1_threshold must be in [0, 1], got {value!r}")
        return threshold

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Return the normalized stated answer or ``None`` with the reason; never raises on text."""
        return extract_text(text, question)

    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Score normalized ``answer`` against the gold by token F1; reason gives the F1."""
        threshold = self._threshold(question, options)
        f1 = token_f1(answer.split(), _gold_tokens(question))
        ok = f1 >= threshold - 1e-9  # why: F1 exactly at the threshold may round a hair below it
        return Verdict(ok, answer, f"token F1 {f1:.2f} {'>=' if ok else '<'} {threshold:g}")
