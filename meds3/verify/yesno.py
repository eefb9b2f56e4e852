"""Yes/no/maybe questions (PubMedQA, BioASQ) asked as open questions.

The same datasets asked as multiple choice (options ``{"A": "yes", "B": "no", "C": "maybe"}``)
go through :mod:`meds3.verify.choice`, which reads both "(A)" and "yes" via the option texts.
"""

from __future__ import annotations

import re
from typing import Any

from meds3.data.question import MedQuestion
from meds3.verify.choice import parse_choice_tail
from meds3.verify.core import Extraction, Verdict, Verifier, register_verifier
from meds3.verify.statements import (
    AMBIGUOUS,
    FOUND,
    NOTHING,
    Parsed,
    answer_statements,
    answer_tokens,
    clean_text,
    last_line,
    parse_negation,
    read_last_statement,
)

#: The answers a yes_no question can have.
YES_NO_MAYBE = ("yes", "no", "maybe")

_JUNK = " \t*_\"'`:=-–—"
_WORD = re.compile(
    r"""(?:(?:the|an?|answer|that|therefore|thus|so|definitely|definite|clear|clearly|simply|probably|likely)\b
           [ \t]*[:,\-]?[ \t]*)*
        (?:[(\[][A-Za-z][)\]][ \t]*)?  # "(A) yes" when the prompt listed options the question lacks
        (?P<word>yes|no|maybe)\b""",
    re.IGNORECASE | re.VERBOSE,
)
_MORE = re.compile(r"^[.!]?\s*(?:,\s*(?:or\s+|and\s+)?|/\s*|and/or\s+|or\s+|and\s+|vs\.?\s+)(?P<word>yes|no|maybe)\b",
                   re.IGNORECASE)
_BARE = re.compile(r"^[\W_]*(?P<word>yes|no|maybe)[\W_]*$", re.IGNORECASE)


def _option_word(letter: str | None, options: dict[str, str]) -> str | None:
    """The yes/no/maybe an option letter stands for, or ``None``."""
    word = " ".join(answer_tokens(str(options.get(letter or "", ""))))
    return word if word in YES_NO_MAYBE else None


def parse_yes_no_tail(tail: str, options: dict[str, str] | None = None) -> Parsed:
    """Read yes/no/maybe from a statement tail.

    Takes the tail and, optionally, options mapping letters to yes/no/maybe (so "(A)"
    counts); returns a :class:`Parsed` with answer ``"yes"``, ``"no"`` or ``"maybe"``;
    "yes or no" is ambiguous and "not yes" negated. Never raises.
    """
    negation = parse_negation(tail, lambda rest: parse_yes_no_tail(rest, options))
    if negation is not None:
        return negation
    body = tail.lstrip(_JUNK)
    if options:
        choice = parse_choice_tail(body, options)
        if choice.status == AMBIGUOUS:
            return choice
        word = _option_word(choice.answer, options) if choice.status == FOUND else None
        if word:
            return Parsed(FOUND, word, f"option {choice.answer}")
    match = _WORD.match(body)
    if not match:
        return Parsed(NOTHING)
    word = match.group("word").lower()
    more = _MORE.match(body[match.end():])
    if more and more.group("word").lower() != word:
        return Parsed(AMBIGUOUS, note=f"{word}, {more.group('word').lower()}")
    return Parsed(FOUND, word)


def gold_yes_no(question: MedQuestion) -> str:
    """Return the question's gold answer as ``"yes"``/``"no"``/``"maybe"``.

    Accepts the word in any case, or an option letter whose text is one of them.
    Raises ``ValueError`` naming the question otherwise.
    """
    gold = str(question.answer).strip().lower()
    if gold in YES_NO_MAYBE:
        return gold
    word = _option_word(gold.upper(), dict(question.options or {}))
    if word:
        return word
    raise ValueError(f"question {question.id!r}: yes_no answer must be yes, no or maybe, got {question.answer!r}")


@register_verifier("yes_no")
class YesNoVerifier(Verifier):
    """Checks a yes/no/maybe answer against ``question.answer``.

    Reading: the last explicit statement naming yes, no or maybe ("The answer is yes",
    "Answer: No.", "\\boxed{maybe}"; an option letter when the question has yes/no
    options); without one, a final line that is only "Yes."/"No."/"Maybe.". A text that
    merely starts with "Yes," is not read (too weak). "yes or no" and a negated final
    statement ("the answer is not yes") are unverifiable. No keyword options.
    """

    def validate(self, question: MedQuestion, **options: Any) -> None:
        """Raise ``ValueError`` unless the gold answer is yes, no or maybe."""
        gold_yes_no(question)

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Return ``"yes"``/``"no"``/``"maybe"`` or ``None`` with the reason; never raises on text."""
        text = clean_text(text)
        options = dict(question.options or {})
        statements = answer_statements(text)
        found = read_last_statement(statements, lambda tail: parse_yes_no_tail(tail, options))
        if found is not None:
            return found
        bare = _BARE.match(last_line(text))
        if bare:
            return Extraction(bare.group("word").lower(), "last line (no answer statement)")
        if statements:
            return Extraction(None, "no answer statement says yes, no or maybe")
        return Extraction(None, "no answer statement found")

    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Compare ``answer`` (yes/no/maybe) with the gold answer."""
        gold = gold_yes_no(question)
        if answer == gold:
            return Verdict(True, answer, f"{answer} matches gold {gold}")
        return Verdict(False, answer, f"{answer} but gold is {gold}")
