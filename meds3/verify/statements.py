"""Finding where a model states its answer, shared by every verifier.

* :func:`clean_text` turns any model output into plain text the parsers can read
  (unicode NFKC, markdown bold and LaTeX wrappers removed, ``\\boxed{X}`` read as an
  answer statement, superscripts kept as ``^n``).
* :func:`answer_statements` finds explicit answer statements ("The answer is",
  "Answer:", "Final answer:", "the correct option is", "I would choose") in text order,
  each with the text that follows it (its *tail*).
* :func:`read_last_statement` applies a task's tail parser from the last statement
  backwards: the last stated answer wins; two answers, denials and refusals are
  unverifiable.
* :func:`answer_tokens` is the normalization every text comparison uses (lowercase,
  punctuation and articles dropped, numbers canonical).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from meds3.verify.core import Extraction

#: Only the last this-many characters are read: answers are stated at the end, and it
#: bounds the cost of runaway generations.
MAX_CHARS = 200_000

#: Only the last this-many answer statements are read (real outputs have a handful).
MAX_STATEMENTS = 100

#: Characters of text after a cue that can belong to its tail.
TAIL_CHARS = 400

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_GROUP = re.compile(r"([\^_])\{([^{}]*)\}")  # 10^{3} -> 10^3, so \boxed{...} has no inner braces
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_LATEX_SYMBOLS = {
    r"\%": "%", r"\times": "×", r"\approx": "≈", r"\cdot": "·", r"\sim": "~",
    r"\,": " ", r"\;": " ", r"\!": "", r"\left": "", r"\right": "",
}
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "−": "-", "‐": "-", "‑": "-"})
_HEADING = re.compile(r"(?m)^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?)")  # markdown headings and blockquotes

_VERB = (r"(?:is|was|would\s+be|should\s+be|will\s+be|must\s+be|could\s+be|seems\s+to\s+be|"
         r"appears\s+to\s+be|remains)\b")
_ADVERB = (r"(?:\s+(?:therefore|thus|then|clearly|likely|probably|definitely|indeed|still|now|"
           r"most\s+likely|most\s+probably))?")
_QUALIFIER = (r"(?:final|correct|right|best|true|appropriate|single\s+best|"
              r"most\s+(?:likely|appropriate|accurate|probable|correct|plausible|suitable))")
_ENDING = rf"(?:{_VERB}{_ADVERB}\s*[:=]?|[:=])"
_CUE = re.compile(
    rf"""\b(?:
        answer(?:\s+to\s+(?:this|the)\s+question)?\s*{_ENDING}
      | {_QUALIFIER}\s+(?:option|choice|response|selection|answer\s+choice)\s*{_ENDING}
      | I\s+(?:would\s+|will\s+)?(?:choose|select|pick|go\s+with)\b[:]?
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_SKIP_BLANK = re.compile(r"\s*")
_NEGATION = re.compile(r"^(?:[\s*_\"'`]|\b(?:the|that|an|therefore|thus|so|definitely|clearly)\b)*not\b", re.I)
_DECLINE = re.compile(r"""^[\s*_"'`:]*(?:none\b|neither\b|unclear|unknown|undetermin|indetermin|cannot\b|can\s?not\b|
                       can't\b|impossible|insufficient|uncertain|inconclusive|not\s+(?:possible|clear|determin))""",
                      re.IGNORECASE | re.VERBOSE)
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[%<>≤≥+±↑↓]|[^\W\d_]+")  # why: "<10%" and ">10%" are different options
_ARTICLES = frozenset({"a", "an", "the"})
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[\n;]")


@dataclass(frozen=True)
class Statement:
    """One explicit answer statement.

    Attributes:
        start: character offset of the cue in the cleaned text (orders statements).
        tail: what follows the cue up to the end of that line (the next non-blank line
            when the cue ends its line), at most :data:`TAIL_CHARS` characters; ``""``
            when the text ends right after the cue (a truncated answer).
    """

    start: int
    tail: str


#: Outcomes of parsing one statement tail.
FOUND, NOTHING, AMBIGUOUS, NEGATED, UNCLEAR = "found", "nothing", "ambiguous", "negated", "unclear"


@dataclass(frozen=True)
class Parsed:
    """What a task-specific parser read from one statement tail.

    Attributes:
        status: :data:`FOUND` (``answer`` is set), :data:`NOTHING` (the tail states no
            answer of this type: look at earlier statements), :data:`AMBIGUOUS` (two
            different answers), :data:`NEGATED` (``"not A"``; ``answer`` is what is
            denied, if readable) or :data:`UNCLEAR` (an answer is stated but cannot be
            read safely, e.g. "E because ..." with options A-D).
        answer: the normalized answer when found.
        note: detail for the reason (the competing answers, how it was read).
    """

    status: str
    answer: str | None = None
    note: str = ""


def coerce_text(text: object) -> str:
    """Return model output of any type as ``str`` without raising.

    Takes anything: ``None`` gives ``""``, bytes are decoded as UTF-8 with invalid bytes
    replaced, other objects go through ``str()`` (``""`` if that raises).
    """
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", errors="replace")
    try:
        return str(text)
    except Exception:  # why: an object with a broken __str__ is still "no answer", not a crash
        return ""


def clean_text(text: object) -> str:
    """Normalize model output for answer parsing.

    Takes any model output (coerced with :func:`coerce_text`); returns its last
    :data:`MAX_CHARS` characters with superscripts written ``^n`` (``m²`` -> ``m^2``,
    ``10⁻³`` -> ``10^-3``), unicode NFKC-normalized, curly quotes and unicode minus signs
    made ASCII, markdown bold/code/heading/blockquote marks and ``$`` removed, LaTeX
    ``\\text{}`` wrappers unwrapped, and ``\\boxed{X}`` rewritten as the statement ``the answer is X.``.
    Never raises.
    """
    text = coerce_text(text)[-MAX_CHARS:]
    # why: NFKC would turn "10³" into "103" and silently change the number
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), text)
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _LATEX_GROUP.sub(r"\1\2", text)
    for _ in range(3):  # why: unwrap nested \text{\textbf{B}} from the inside out
        text = _LATEX_WRAPPER.sub(r"\1", text)
    text = _BOXED.sub(r" the answer is \1. ", text)
    for symbol, plain in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, plain)
    text = text.replace("**", "").replace("__", "").replace("`", "").replace("$", "")
    return _HEADING.sub("", text)


def answer_statements(text: str) -> list[Statement]:
    """Find the explicit answer statements in cleaned text, in text order.

    Takes text already passed through :func:`clean_text`; returns one
    :class:`Statement` per cue ("The answer is", "Answer:", "Final answer:", "the correct
    option is", "the best choice would be", "I would choose", ...). Never raises.
    """
    return [Statement(m.start(), statement_tail(text, m.end())) for m in _CUE.finditer(text)]


def statement_tail(text: str, end: int) -> str:
    """Return the tail of a statement whose cue ends at offset ``end`` of ``text``.

    Takes the cleaned text and the cue's end offset; returns the rest of the line,
    skipping blank space and line breaks first (``"Answer:\\n\\n(B)"`` has tail ``"(B)"``),
    stripped, at most :data:`TAIL_CHARS` characters.
    """
    window = text[end:end + TAIL_CHARS + 200]
    window = window[_SKIP_BLANK.match(window).end():]
    return window.split("\n", 1)[0][:TAIL_CHARS].strip()


def parse_negation(tail: str, parse: Callable[[str], Parsed]) -> Parsed | None:
    """Read a denial ("not A", "not yes") with the tail parser ``parse``.

    Returns ``None`` when ``tail`` does not start with "not"; else a :class:`Parsed` with
    status :data:`NEGATED` and, as answer, what is denied (``None`` if ``parse`` finds
    nothing after "not").
    """
    match = _NEGATION.match(tail)
    if not match:
        return None
    rest = tail[match.end():]
    while match := _NEGATION.match(rest):  # why: "not not ..." must not recurse once per "not"
        rest = rest[match.end():]
    denied = parse(rest)
    return Parsed(NEGATED, denied.answer if denied.status == FOUND else None)


def first_clause(tail: str) -> str:
    """Return ``tail`` up to its first sentence end (``.``/``!``/``?`` before a space or the
    end, ``;`` or a line break), so ``"3.0 g/day. It is..."`` gives ``"3.0 g/day"``."""
    match = _SENTENCE_END.search(tail)
    return tail[:match.start()] if match else tail


def last_line(text: str) -> str:
    """Return the last non-blank line of cleaned text (its first :data:`TAIL_CHARS`
    characters), stripped, with any leading ``Step k:`` label removed; ``""`` for blank text."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return re.sub(r"^step\s*\d+\s*[:.]\s*", "", line[:TAIL_CHARS], flags=re.I)
    return ""


def previous_line(text: str) -> str:
    """Return the non-blank line before the last one (as :func:`last_line`), or ``""``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return ""
    return re.sub(r"^step\s*\d+\s*[:.]\s*", "", lines[-2][:TAIL_CHARS], flags=re.I)


def answer_tokens(text: str) -> list[str]:
    """Normalize text into comparison tokens (SQuAD-style, plus unit-friendly rules).

    Takes any string; returns lowercase NFKC tokens: words, numbers and the symbols
    ``% < > ≤ ≥ + ± ↑ ↓`` (they tell options apart), with other punctuation and the
    articles a/an/the dropped, thousands commas removed, numbers canonical (``3.0`` ->
    ``3``) and digits split from letters (``10mg`` -> ``10 mg``, ``m^2`` -> ``m 2``).
    ``"The Nernst equation."`` and ``"nernst EQUATION"`` give the same tokens. Never raises.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return [_canonical(t) for t in _TOKEN.findall(text) if t not in _ARTICLES]


def _canonical(token: str) -> str:
    """Write numeric tokens one way (``3.0``, ``3.00`` -> ``3``; ``0.60`` -> ``0.6``)."""
    if not token[0].isdigit() or len(token) > 30:
        return token
    try:
        value = float(token)
    except ValueError:
        return token
    return str(int(value)) if value.is_integer() else repr(value)


def read_last_statement(statements: list[Statement], parse: Callable[[str], Parsed]) -> Extraction | None:
    """Apply ``parse`` to statement tails from the last statement backwards.

    Takes statements in text order and a tail parser; returns an :class:`Extraction` for
    the first decisive statement from the end: an answer (unverifiable if a later
    statement denies that very answer, "the answer is not B"), two answers, an
    unclear answer, an unparseable denial, a refusal ("none", "unclear", "cannot be
    determined"), or a cut-off statement (the text ends right after the cue). A denial
    of some other answer is passed over. Returns ``None`` when no statement states an answer of this type (the
    caller may then try weaker cues).
    """
    denied: dict[str, str] = {}
    for statement in reversed(statements[-MAX_STATEMENTS:]):
        if not statement.tail:
            return Extraction(None, "the final answer statement is cut off")
        parsed = parse(statement.tail)
        quoted = repr(statement.tail[:80])
        if parsed.status == FOUND and parsed.answer in denied:
            return Extraction(None, f"stated {parsed.answer}, then denied it: {denied[parsed.answer]}")
        if parsed.status == FOUND:
            return Extraction(parsed.answer, f"stated {quoted}" + (f" ({parsed.note})" if parsed.note else ""))
        if parsed.status == AMBIGUOUS:
            return Extraction(None, f"final statement gives two different answers ({parsed.note}): {quoted}")
        if parsed.status == UNCLEAR:
            return Extraction(None, f"final statement is unclear ({parsed.note}): {quoted}")
        if parsed.status == NEGATED and parsed.answer is None:
            return Extraction(None, f"final statement is negated: {quoted}")
        if parsed.status == NEGATED:
            # why: "the answer is not A" after "the answer is B" still leaves B standing
            denied.setdefault(parsed.answer, quoted)
        elif _DECLINE.match(statement.tail):
            return Extraction(None, f"final statement gives no answer: {quoted}")
    if denied:
        return Extraction(None, f"answer statements only deny: {', '.join(denied.values())}")
    return None
