"""Multiple choice: read the chosen option letter (or option text) and compare with the gold letter.

Decisions (each also in :class:`MultipleChoiceVerifier`'s docstring):

* A letter is read in any common form: ``(B)``, ``B.``, ``B)``, ``B:``, ``[B]``, ``option B``,
  ``**B.**``, ``\\boxed{B}``, ``Answer: b) hypertension``. A letter followed by a word
  ("B because ...") is a weak reading that an option-text match overrides, and "a"/"i"/"I"
  count only when delimited (``(a)``, ``a)``, ``a.``, ``option a``, or alone at the end):
  "The answer is a beta blocker" is read through the option texts instead.
* The option's text works in place of its letter (normalized: case, punctuation, articles).
  An exact match of the statement (or its first clause) wins; otherwise the longest option
  text the statement starts with; otherwise the single option whose text starts with the
  whole clause ("false" for "false, text1 is not a fact."); two options with the same
  text make it unverifiable.
* A delimited letter and a following option text that disagree: the letter wins, unless
  the whole statement is exactly a multi-word option text that starts like a letter
  ("I, III, IV", "E. coli").
* A clearly stated letter that is not an option (``E`` when options are A-D) is a real,
  wrong answer: ``correct=False``, reason ``"letter E not among options A-D"``. An
  undelimited one ("the answer is E because ...") may be a word, so it is unverifiable.
* ``"The answer is A or C"`` / ``"A and C"`` / ``"(A), (C)"``: unverifiable.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from meds3.data.question import LETTERS, MedQuestion
from meds3.verify.core import Extraction, Verdict, Verifier, register_verifier
from meds3.verify.statements import (
    AMBIGUOUS,
    FOUND,
    NOTHING,
    UNCLEAR,
    Parsed,
    Statement,
    answer_statements,
    answer_tokens,
    clean_text,
    first_clause,
    last_line,
    parse_negation,
    previous_line,
    read_last_statement,
)

_JUNK = " \t*_\"'`:=-–—"
_LETTER = re.compile(
    r"""(?P<pre>(?:(?:the|an|correct|final|answer|option|choice|letter|both|either|therefore|thus|so)\b
                   [ \t]*[:\-]?[ \t]*)*)
        (?P<open>[(\[{<])?[ \t]*
        (?P<letter>[A-Za-z])(?![A-Za-z0-9])
        (?:[ \t]*(?P<close>[)\]}>]))?""",
    re.IGNORECASE | re.VERBOSE,
)
_PREFIX_WORD = re.compile(r"\b(?:option|choice|letter)\b", re.I)
_STRONG_AFTER = re.compile(r"""^(?:$|\s*$|[.:,;!?*_"'/]|\s+[-–—:](?:\s|$))""")
_MORE = re.compile(
    r"""^[.)\]]?\s*(?:,\s*(?:and\s+|or\s+)?|/|&|and/or\s+|or\s+|and\s+|vs\.?\s+|versus\s+)
        (?:(?:option|choice)\s*)?(?P<open>[(\[])?\s*(?P<letter>[A-Za-z])(?![A-Za-z0-9])""",
    re.IGNORECASE | re.VERBOSE,
)
_REVERSE = re.compile(
    r"""(?:(?i:\b(?:option|choice)\s*[(\[]?\s*(?P<l1>[a-z])\s*[)\]]?)
          |[(\[](?P<l2>[A-Za-z])[)\]]
          |(?:^|(?<=[\n.:;!?,])|(?i:(?<=\bso\s)|(?<=\bthus\s)|(?<=\bhence\s)|(?<=therefore\s)))
           [ \t]*(?P<l3>[A-Z]))
        (?![A-Za-z0-9])[ \t]*
        (?i:(?:is|would\s+be|seems\s+to\s+be)\s+(?:the\s+)?
            (?:correct|right|best|most\s+appropriate|most\s+likely|true)\b)""",
    re.VERBOSE | re.MULTILINE,
)  # a bare capital letter only after a clause break: "Vitamin D is the correct ..." names no option
_CONNECTORS = frozenset({"or", "and", "vs", "versus"})


def describe_letters(options: dict[str, str]) -> str:
    """Write option letters compactly: ``"A-D"`` when they run A, B, C, D; else ``"A, C"``."""
    keys = list(options)
    if len(keys) > 1 and "".join(keys) == LETTERS[:len(keys)]:
        return f"{keys[0]}-{keys[-1]}"
    return ", ".join(keys) or "(none)"


def _key(options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Options as a hashable key for :func:`_option_tokens`."""
    return tuple((str(letter), str(body)) for letter, body in options.items())


@functools.lru_cache(maxsize=256)
def _option_tokens(items: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """Normalized tokens of each option text (cached: every statement of a text reuses them)."""
    return {letter: answer_tokens(body) for letter, body in items}


def match_option_text(text: str, options: dict[str, str]) -> tuple[list[str], list[str], bool]:
    """Find the options whose text the answer ``text`` states.

    Takes a statement tail and the question's options; returns ``(letters, rest,
    specific)``: the letters matched (several only when option texts normalize to the
    same tokens), the answer tokens after the match (for spotting "X or Y"), and whether
    the whole first clause equals an option text of two or more tokens (such a match
    beats a letter reading: "I, III, IV", "E. coli"). An exact match of the line or of
    its first clause wins, else the longest option text that starts the tail, else the
    one option whose text starts with the whole first clause; ``([], [], False)`` when
    none does.
    """
    tokens = answer_tokens(text)
    clause = answer_tokens(first_clause(text))
    option_tokens = _option_tokens(_key(options))
    for whole in (tokens, clause):  # why: the whole line first, as "?" or "." may sit inside an option text
        exact = [letter for letter, toks in option_tokens.items() if toks and toks == whole]
        if exact:
            return exact, tokens[len(whole):], len(whole) > 1
    prefixes = [(len(toks), letter) for letter, toks in option_tokens.items()
                if toks and tokens[:len(toks)] == toks]
    if not prefixes:
        # why: "The answer is false." names option "false, text1 is not a fact." when only it starts so
        starts = [letter for letter, toks in option_tokens.items() if clause and toks[:len(clause)] == clause]
        return (starts, tokens[len(clause):], False) if len(starts) == 1 else ([], [], False)
    longest = max(n for n, _ in prefixes)
    return [letter for n, letter in prefixes if n == longest], tokens[longest:], False


def _other_option_follows(rest: list[str], letters: list[str], options: dict[str, str]) -> str | None:
    """Return an option other than ``letters`` named right after "or"/"and" in ``rest``."""
    if not rest or rest[0] not in _CONNECTORS:
        return None
    rest = rest[1:]
    for letter, toks in _option_tokens(_key(options)).items():
        if letter not in letters and toks and rest[:len(toks)] == toks:
            return letter
    return None


def _second_letter(after: str, first: str, options: dict[str, str]) -> str | None:
    """Return a different option letter named right after ``first`` ("A or C", "(A), (C)")."""
    more = _MORE.match(after)
    if not more:
        return None
    letter = more.group("letter")
    # why: a lowercase bare letter after "and" is the article ("A and a ..."), not an option
    if letter.islower() and not more.group("open") and not _PREFIX_WORD.search(more.group(0)):
        return None
    letter = letter.upper()
    return letter if letter != first and letter in options else None


def parse_choice_tail(tail: str, options: dict[str, str]) -> Parsed:
    """Read the option a statement tail names.

    Takes a statement tail (text after "The answer is") and the options; returns a
    :class:`Parsed` whose answer is an uppercase letter (possibly not among the options
    when clearly stated) and whose note is ``"letter"``, ``"weak letter"`` or ``"text"``.
    Never raises.
    """
    negation = parse_negation(tail, lambda rest: parse_choice_tail(rest, options))
    if negation is not None:
        return negation
    body = tail.lstrip(_JUNK)
    texts, rest, specific = match_option_text(body, options)
    letter_match = _LETTER.match(body)
    if letter_match:
        letter = letter_match.group("letter")
        upper = letter.upper()
        after = body[letter_match.end():]
        strong = bool(letter_match.group("open") or letter_match.group("close")
                      or _PREFIX_WORD.search(letter_match.group("pre")) or _STRONG_AFTER.match(after))
        other = _second_letter(after, upper, options)
        if other:
            return Parsed(AMBIGUOUS, note=f"{upper}, {other}")
        # why: "I, III, IV" or "E. coli" is an option's text that starts like a letter
        if strong and not (texts and (specific or upper not in options)):
            return Parsed(FOUND, upper, "letter")
        # why: an undelimited "a"/"A"/"I" may be an article or pronoun; option text decides
        if not texts and letter not in "aiI" and upper in options:
            return Parsed(FOUND, upper, "weak letter")
        if not texts and letter.isupper() and upper != "I":
            return Parsed(UNCLEAR, note=f"{upper} is not an option and may start a word")
    if len(texts) > 1:
        return Parsed(AMBIGUOUS, note="options " + ", ".join(texts) + " have the same text")
    if texts:
        other = _other_option_follows(rest, texts, options)
        if other:
            return Parsed(AMBIGUOUS, note=f"{texts[0]}, {other}")
        return Parsed(FOUND, texts[0], "text")
    return Parsed(NOTHING)


def reverse_statements(text: str) -> list[Statement]:
    """Find "Option B is correct" / "(B) is the correct answer" / "B is the best choice"
    statements in cleaned text; each becomes a :class:`Statement` with tail ``"(B)"``."""
    found = []
    for match in _REVERSE.finditer(text):
        letter = match.group("l1") or match.group("l2") or match.group("l3")
        found.append(Statement(match.start(), f"({letter})"))
    return found


def _last_line_choice(text: str, options: dict[str, str]) -> Extraction | None:
    """Weak cue: the text ends with a bare option line ("**B.**", "(C) Nernst equation",
    "B: ...", or an option's exact text), not preceded by another option line."""
    line = last_line(text)
    parsed = parse_choice_tail(line, options) if line else Parsed(NOTHING)
    if parsed.status != FOUND:
        return None
    if parsed.note == "text" and answer_tokens(line) != answer_tokens(options.get(parsed.answer, "")):
        return None
    if parsed.note == "weak letter":
        return None
    before = parse_choice_tail(previous_line(text), options)
    # why: a text ending in a list of options ("C. ...\nD. ...") has chosen nothing
    if before.status == FOUND and before.note == "letter" and before.answer != parsed.answer:
        return Extraction(None, "text ends with a list of options, not a choice")
    return Extraction(parsed.answer, f"last line {line[:80]!r} (no answer statement)")


@register_verifier("multiple_choice")
class MultipleChoiceVerifier(Verifier):
    """Checks the option a model chose against ``question.answer`` (a letter).

    Reading: explicit statements ("The answer is (B)", "Answer: b) ...", "the correct
    option is C", "\\boxed{B}", "Option B is correct"), the last one that names an option
    wins; without any, a final bare option line ("**B.**", "(C) Nernst equation").
    Verdicts: a clearly stated letter outside the options is ``False`` ("letter E not
    among options A-D"), since the model did answer; "A or C", a negated final statement
    ("the answer is not A") or a cut-off statement give ``None``. Questions whose options
    are yes/no/maybe (PubMedQA, BioASQ) accept "The answer is yes" through the option
    text. No keyword options.
    """

    def validate(self, question: MedQuestion, **options: Any) -> None:
        """Raise ``ValueError`` when the question has no options or its answer is not one."""
        if not question.options:
            raise ValueError(f"question {question.id!r}: multiple_choice needs options")
        gold = str(question.answer).strip().upper()
        if gold not in question.options:
            raise ValueError(f"question {question.id!r}: answer {question.answer!r} is not among options "
                             f"{describe_letters(question.options)}")

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Return the chosen letter (uppercase) or ``None`` with the reason; never raises on text."""
        text = clean_text(text)
        options = dict(question.options or {})
        statements = sorted(answer_statements(text) + reverse_statements(text), key=lambda s: s.start)
        found = read_last_statement(statements, lambda tail: parse_choice_tail(tail, options))
        if found is not None:
            return found
        fallback = _last_line_choice(text, options)
        if fallback is not None:
            return fallback
        if statements:
            return Extraction(None, "no answer statement names an option")
        return Extraction(None, "no answer statement found")

    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Compare letter ``answer`` with the gold letter; a letter outside the options is False."""
        self.validate(question)
        gold = str(question.answer).strip().upper()
        if answer not in question.options:
            return Verdict(False, answer, f"letter {answer} not among options {describe_letters(question.options)}")
        if answer == gold:
            return Verdict(True, answer, f"{answer} matches gold {gold}")
        return Verdict(False, answer, f"{answer} but gold is {gold}")
