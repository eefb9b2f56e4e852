"""Record converters, one per public dataset format, registered by name.

A converter turns one raw record into a :class:`MedQuestion` or raises
:class:`FieldError` naming the field at fault; the loader adds file and place. A new
format is one function registered with :func:`register_format`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Callable

from meds3.data.errors import FieldError
from meds3.data.question import LETTERS, TASK_TYPES, MedQuestion

YES_NO_MAYBE = ("yes", "no", "maybe")


@dataclass
class Format:
    """A named record format: how to recognise a record, and how to convert it."""

    name: str
    detect: Callable[[Any], bool]
    convert: Callable[..., MedQuestion]
    container: str = "any"  # "jsonl", "json", "csv" or "any"


FORMATS: dict[str, Format] = {}


def register_format(name: str, detect: Callable[[Any], bool], container: str = "any"):
    """Decorator registering ``convert(record, index, ctx) -> MedQuestion`` under ``name``."""

    def wrap(convert):
        FORMATS[name] = Format(name, detect, convert, container)
        return convert

    return wrap


# ---------------------------------------------------------------- shared field checks

def need_str(record: dict, key: str, *, allow_empty: bool = False) -> str:
    """Return ``record[key]`` as a stripped str; FieldError if missing, empty or not text."""
    if key not in record or record[key] is None:
        raise FieldError(key, "is missing")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(key, f"must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text and not allow_empty:
        raise FieldError(key, "is empty")
    return text


def record_id(record: dict, key: str, fallback: str) -> str:
    """An id from ``record[key]`` (str or int) or the fallback when the field is absent."""
    value = record.get(key)
    if value is None or value == "":
        return fallback
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(key, f"must be a string or integer, got {type(value).__name__}")
    return str(value)


def lettered(texts: list[Any], field: str) -> dict[str, str]:
    """Options from a list of texts, lettered A, B, C, ... in order; FieldError past Z."""
    if not texts:
        raise FieldError(field, "is empty: a multiple-choice question needs options")
    if len(texts) > len(LETTERS):
        raise FieldError(field, f"has {len(texts)} options but options are lettered A-Z (at most {len(LETTERS)})")
    options = {}
    for letter, text in zip(LETTERS, texts):
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise FieldError(field, f"option {letter} must be text, got {type(text).__name__}")
        options[letter] = str(text).strip()
    return options


def check_options(value: Any, field: str = "options") -> dict[str, str]:
    """Validate an options mapping: single distinct letters -> non-empty text, order kept."""
    if isinstance(value, list):
        return lettered(value, field)
    if not isinstance(value, dict):
        raise FieldError(field, f"must be a mapping of letter to text, got {type(value).__name__}")
    options: dict[str, str] = {}
    for key, text in value.items():
        letter = str(key).strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise FieldError(field, f"key {key!r} is not a single option letter")
        if letter in options:
            raise FieldError(field, f"letter {letter} appears twice")
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise FieldError(field, f"option {letter} must be text, got {type(text).__name__}")
        if not str(text).strip():
            raise FieldError(field, f"option {letter} is empty")
        options[letter] = str(text).strip()
    return options


def letter_answer(answer: str, options: dict[str, str], field: str = "answer") -> str:
    """The gold letter: ``answer`` if it is an option letter, else the letter of the option
    whose text equals it; FieldError otherwise."""
    if not options:
        raise FieldError("options", f"is empty but {field} is {answer!r}")
    letter = answer.strip().rstrip(".").strip("()").upper()
    if len(letter) == 1 and letter in LETTERS:
        if letter in options:
            return letter
        raise FieldError(field, f"is {answer!r} but options are {describe_letters(options)}")
    matches = [k for k, v in options.items() if v.casefold() == answer.strip().casefold()]
    if len(matches) == 1:
        return matches[0]
    raise FieldError(field, f"is {answer!r}, which is neither an option letter "
                            f"({describe_letters(options)}) nor the text of exactly one option")


def describe_letters(options: dict[str, str]) -> str:
    """``"A-D"`` for consecutive letters from A, else ``"A, C, F"``."""
    keys = list(options)
    if "".join(keys) == LETTERS[: len(keys)]:
        return f"A-{keys[-1]}" if len(keys) > 1 else "A"
    return ", ".join(keys)


_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.(?P<decimals>\d+))?[ \t]*%?$")
#: Metadata keys that state a numeric answer's tolerance; a record stating any keeps its own.
TOLERANCE_KEYS = ("tolerance", "abs_tolerance", "range")


def plain_number_tolerance(answer: str) -> float | None:
    """Half a unit in the last stated digit of a plain-number gold, or ``None`` if ``answer``
    is not a plain number: ``"24.2"`` -> 0.05, ``"120"`` -> 0.5, ``"1,200"`` -> 0.5,
    ``"0.50"`` -> 0.005, ``"12.5%"`` -> 0.05. A number followed by any other unit
    (``"10 mg"``, a drug-dose span) is not a plain number."""
    match = _PLAIN_NUMBER.match(answer.strip())
    if not match:
        return None
    decimals = match.group("decimals") or ""
    return 0.5 * 10.0 ** -len(decimals)


def infer_open_task_type(answer: str) -> str:
    """Task type of an open-answer question whose record does not state one.

    Yes/no/maybe golds are ``yes_no``; a plain number (``"24.2"``, ``"-3"``, ``"1,200"``,
    ``"12.5%"``) is ``numeric``; everything else, a number with a unit (``"10 mg"``) too,
    is ``span`` (token F1). See :func:`open_task_type` for the tolerance given to
    inferred numeric questions.
    """
    text = answer.strip()
    if text.casefold() in YES_NO_MAYBE:
        return "yes_no"
    if plain_number_tolerance(text) is not None:
        return "numeric"
    return "span"


def open_task_type(gold: str, meta: dict, ctx: dict, stated: str | None = None) -> str:
    """Task type of an open-answer question, recording inference in ``ctx`` for the load report.

    ``stated`` (the record's own ``task_type``) wins. Otherwise the type is inferred by
    :func:`infer_open_task_type` and ``ctx["inferred_task_type"]`` is set. An inferred
    numeric question gets its tolerance in ``meta`` unless the record states one
    (``tolerance``, ``abs_tolerance`` or ``range``): by default ``abs_tolerance`` half a
    unit in the gold's last stated digit and ``tolerance`` 0; ``ctx["numeric_tolerance"]``
    (``load_questions(numeric_tolerance=...)``) replaces that with a fixed absolute
    tolerance (a number) or with verifier settings (a dict such as ``{"tolerance": 0.01}``).
    """
    if stated:
        return stated
    task_type = infer_open_task_type(gold)
    ctx["inferred_task_type"] = task_type
    if task_type == "numeric" and not any(meta.get(k) is not None for k in TOLERANCE_KEYS):
        setting = ctx.get("numeric_tolerance")
        if setting is None:
            meta.update({"tolerance": 0.0, "abs_tolerance": plain_number_tolerance(gold)})
        elif isinstance(setting, dict):
            meta.update(setting)
        else:
            meta.update({"tolerance": 0.0, "abs_tolerance": float(setting)})
    return task_type


def infer_domain(source: str) -> str:
    """Coarse domain from a dataset name (used for per-domain summaries)."""
    s = source.lower()
    for needle, domain in (("calc", "clinical_calculation"), ("pubmed", "biomedical_literature"),
                           ("bioasq", "biomedical_literature"), ("pubhealth", "health_fact_checking"),
                           ("healthfact", "health_fact_checking"), ("drug", "pharmacology"),
                           ("mmlu", "medical_knowledge"), ("medqa", "medical_exam"),
                           ("medmcqa", "medical_exam"), ("head", "medical_exam")):
        if needle in s:
            return domain
    return ""


# ---------------------------------------------------------------- formats

def _is_dict(r: Any) -> bool:
    return isinstance(r, dict)


@register_format("medqa", lambda r: _is_dict(r) and "answer_idx" in r and "options" in r and "question" in r)
def medqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """MedQA's original JSONL: ``question``, ``options`` (letter -> text), ``answer_idx``, ``answer``."""
    options = check_options(record.get("options"))
    answer = letter_answer(need_str(record, "answer_idx"), options, "answer_idx")
    text = record.get("answer")
    if isinstance(text, str) and text.strip() and text.strip().casefold() != options[answer].casefold():
        raise FieldError("answer", f"is {text!r} but option {answer} (answer_idx) is {options[answer]!r}")
    meta = {k: v for k, v in record.items() if k not in ("question", "options", "answer_idx", "answer", "id")}
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=need_str(record, "question"),
                       options=options, answer=answer, source=ctx.get("source") or "MedQA",
                       domain="medical_exam", metadata=meta)


MEDMCQA_OPTION_KEYS = ("opa", "opb", "opc", "opd")


@register_format("medmcqa", lambda r: _is_dict(r) and "opa" in r and "cop" in r)
def medmcqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """MedMCQA: ``opa``..``opd``, ``cop`` 0-3 (Hugging Face copy) or 1-4 (original release).

    ``ctx["cop_base"]`` (0 or 1) is decided per file by the loader from all ``cop`` values.
    """
    texts = []
    for key in MEDMCQA_OPTION_KEYS:
        texts.append(need_str(record, key))
    options = lettered(texts, "opa..opd")
    cop = record.get("cop")
    if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
        cop = int(cop)
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise FieldError("cop", f"must be an integer option index, got {cop!r}")
    base = ctx.get("cop_base", 1)
    if cop < base or cop > base + 3:
        hint = " (the MedMCQA test split has no public labels)" if cop < 0 else ""
        raise FieldError("cop", f"is {cop} but must be {base}-{base + 3}{hint}")
    meta = {k: v for k, v in record.items() if k not in ("question", "cop", "id", *MEDMCQA_OPTION_KEYS)}
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=need_str(record, "question"),
                       options=options, answer=LETTERS[cop - base], source=ctx.get("source") or "MedMCQA",
                       domain="medical_exam", metadata=meta)


@register_format("pubmedqa", lambda r: _is_dict(r) and "QUESTION" in r and "final_decision" in r, container="json")
def pubmedqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """PubMedQA ``ori_pqal.json``: one record per PMID key; yes/no/maybe as options A-C."""
    decision = need_str(record, "final_decision").lower()
    if decision not in YES_NO_MAYBE:
        raise FieldError("final_decision", f"is {decision!r}, expected yes, no or maybe")
    contexts = record.get("CONTEXTS") or []
    labels = record.get("LABELS") or []
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise FieldError("CONTEXTS", "must be a list of strings")
    parts = [f"{lab}: {c}" if isinstance(lab, str) and lab else c
             for c, lab in zip(contexts, list(labels) + [""] * len(contexts))]
    pmid = ctx.get("key") or str(index)
    meta = {"context": "\n".join(parts), "pmid": pmid, "answer_text": decision}
    for key in ("LONG_ANSWER", "YEAR", "MESHES", "reasoning_required_pred", "reasoning_free_pred"):
        if key in record:
            meta[key.lower()] = record[key]
    options = dict(zip("ABC", YES_NO_MAYBE))
    return MedQuestion(id=f"pubmedqa_{pmid}", question=need_str(record, "QUESTION"), options=options,
                       answer="ABC"[YES_NO_MAYBE.index(decision)], source=ctx.get("source") or "PubMedQA",
                       domain="biomedical_literature", metadata=meta)


MMLU_HEADER = ["question", "a", "b", "c", "d", "answer"]


@register_format("mmlu", lambda r: isinstance(r, list), container="csv")
def mmlu(row: list, index: int, ctx: dict) -> MedQuestion:
    """MMLU CSV without header: question, A, B, C, D, answer letter. Subject from the file name."""
    if len(row) != 6:
        raise FieldError(None, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
    question, *texts, answer = row
    if not question.strip():
        raise FieldError("question", "is empty")
    options = lettered(texts, "A-D")
    for letter, text in options.items():
        if not text:
            raise FieldError(letter, "option text is empty")
    subject = re.sub(r"_(test|dev|val|train)$", "", ctx["stem"])
    return MedQuestion(id=f"{ctx['stem']}_{index}", question=question.strip(), options=options,
                       answer=letter_answer(answer, options), source=ctx.get("source") or f"MMLU {subject}",
                       domain="medical_knowledge", metadata={"subject": subject})


def _headqa_record(r: Any) -> bool:
    return _is_dict(r) and "qtext" in r and "answers" in r


@register_format("headqa", _headqa_record)
def headqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """HEAD-QA: ``qtext``, ``answers`` [{aid, atext}], ``ra`` (the right aid), per exam."""
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers:
        raise FieldError("answers", "must be a non-empty list of {aid, atext}")
    try:
        ordered = sorted(answers, key=lambda a: int(a["aid"]))
        texts = [a["atext"] for a in ordered]
        aids = [int(a["aid"]) for a in ordered]
    except (KeyError, TypeError, ValueError):
        raise FieldError("answers", "every answer needs an integer 'aid' and an 'atext'") from None
    options = lettered(texts, "answers")
    ra = record.get("ra")
    try:
        ra = int(ra)
    except (TypeError, ValueError):
        raise FieldError("ra", f"must be the integer aid of the right answer, got {ra!r}") from None
    if ra not in aids:
        raise FieldError("ra", f"is {ra} but answer ids are {aids}")
    exam = ctx.get("exam") or record.get("name") or ctx["stem"]
    lang = ctx.get("language") or ""
    qid = record_id(record, "qid", str(index))
    meta = {k: v for k, v in record.items() if k not in ("qtext", "answers", "ra", "qid")}
    meta.update({k: ctx[k] for k in ("category", "year") if ctx.get(k) is not None})
    meta["exam"] = exam
    return MedQuestion(id="_".join(p for p in ("headqa", lang, exam, qid) if p), question=need_str(record, "qtext"),
                       options=options, answer=LETTERS[aids.index(ra)], source=ctx.get("source") or "HEAD-QA",
                       domain="medical_exam", metadata=meta)


_OPTION_LINE = re.compile(r"^\(?([A-Z])[.):]\s+(.+)$")
_QUOTES = "\"'“”‘’`"


def _strip_stray_quote(text: str) -> str:
    """``text`` without a trailing quote that closes nothing (MedSSS's ``...?"`` before options)."""
    text = text.rstrip()
    if text.endswith('"') and text.count('"') % 2 == 1:
        return text[:-1].rstrip()
    if text.endswith("”") and text.count("”") > text.count("“"):
        return text[:-1].rstrip()
    return text


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """Split ``question\\nA. x\\nB. y`` into the question and its lettered options.

    Only a trailing run of lines lettered A, B, C, ... in order counts as options; option
    lines may be written ``A. x``, ``A) x``, ``(A) x`` or ``A: x``. Lines holding only
    quotes after the run (MedSSS's ``MedQA.json`` ends 52 blocks with a stray ``"`` line)
    are dropped, and so is an unmatched quote closing the question or the last option.
    """
    lines = text.rstrip().split("\n")
    while lines and not lines[-1].strip(_QUOTES + " \t"):
        lines.pop()
    end = len(lines)
    found: list[tuple[str, str]] = []
    i = end - 1
    while i >= 0:
        m = _OPTION_LINE.match(lines[i].strip())
        if not m:
            break
        found.append((m.group(1), m.group(2).strip()))
        i -= 1
    found.reverse()
    letters = "".join(letter for letter, _ in found)
    # Trim from the front until the run starts at A (a stray "C. ..." line can precede it).
    start = letters.find("A")
    if start < 0 or letters[start:] != LETTERS[: len(letters) - start] or len(letters) - start < 2:
        return text.strip(), {}
    options = dict(found[start:])
    last = letters[-1]
    options[last] = _strip_stray_quote(options[last]) or options[last]
    question = _strip_stray_quote("\n".join(lines[: i + 1 + start]).strip())
    return question, options


_LONE_LETTER = re.compile(r"^\(?[A-Z][.)]?$")


def is_lone_letter(gold: str) -> bool:
    """True for a gold that is only an option letter (``"C"``, ``"(C)"``, ``"C."``)."""
    return bool(_LONE_LETTER.match(gold.strip()))


@register_format("meds3_conversations", lambda r: _is_dict(r) and isinstance(r.get("conversations"), list))
def meds3_conversations(record: dict, index: int, ctx: dict) -> MedQuestion:
    """MedS3's own format: ``conversations[0].value`` holds question and options,
    the gold answer in ``answer_idx`` or ``eval.answer``."""
    conv = record["conversations"]
    if not conv or not isinstance(conv[0], dict):
        raise FieldError("conversations", "must start with a {from, value} turn")
    value = conv[0].get("value")
    if not isinstance(value, str) or not value.strip():
        raise FieldError("conversations[0].value", "is missing or empty")
    question, options = split_options(value)
    if "answer_idx" in record:
        gold, field = need_str(record, "answer_idx"), "answer_idx"
    elif isinstance(record.get("eval"), dict) and "answer" in record["eval"]:
        gold, field = need_str(record["eval"], "answer"), "eval.answer"
    else:
        raise FieldError("answer_idx", "is missing (and there is no eval.answer)")
    meta = {k: v for k, v in record.items() if k not in ("conversations", "id", "answer_idx")}
    if len(conv) > 1 and isinstance(conv[1], dict) and isinstance(conv[1].get("value"), str):
        meta["reference_response"] = conv[1]["value"]
    qid = record_id(record, "id", str(index))
    source = ctx.get("source") or f"MedS3 {ctx['stem']}"
    if options:
        answer, task_type = letter_answer(gold, options, field), "multiple_choice"
    elif is_lone_letter(gold):
        # why: an option letter checked as a text span is a silently wrong verifier
        raise FieldError(field, f"is {gold!r}, an option letter, but no lettered options (lines 'A. ...', "
                                f"'B. ...') end conversations[0].value of record id {qid!r}")
    else:
        answer, task_type = gold, open_task_type(gold, meta, ctx)
    return MedQuestion(id=f"{ctx['stem']}_{qid}", question=question, options=options, answer=answer,
                       task_type=task_type, domain=infer_domain(source), source=source, metadata=meta)


NORMALIZED_FIELDS = ("id", "question", "options", "answer", "task_type", "domain", "source", "metadata")


@register_format("meds3", lambda r: _is_dict(r) and "question" in r and ("answer" in r or "options" in r))
def normalized(record: dict, index: int, ctx: dict) -> MedQuestion:
    """The normalized JSONL of the project's data folder, and meds3's own saved questions:
    ``id``, ``question``, ``options`` (``{}`` for open answers), ``answer`` (letter or text),
    optional ``task_type``, ``domain``, ``source``, ``metadata``; other keys go to metadata."""
    options = check_options(record.get("options") or {})
    if "answer" not in record:
        raise FieldError("answer", "is missing")
    gold = need_str(record, "answer")
    task_type = record.get("task_type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise FieldError("task_type", f"is {task_type!r}, expected one of {', '.join(TASK_TYPES)}")
    if options and not isinstance(record["answer"], str):
        raise FieldError("answer", f"must be an option letter, got {type(record['answer']).__name__} "
                                   f"{record['answer']!r}")
    meta = record.get("metadata") or {}
    if not isinstance(meta, dict):
        raise FieldError("metadata", f"must be a mapping, got {type(meta).__name__}")
    meta = {**{k: v for k, v in record.items() if k not in NORMALIZED_FIELDS}, **meta}
    if options:
        answer, task_type = letter_answer(gold, options), task_type or "multiple_choice"
    elif task_type == "multiple_choice":
        raise FieldError("options", "is empty but task_type is multiple_choice")
    elif task_type is None and is_lone_letter(gold):
        # A bare option letter with no options is a lost options field, not an open answer.
        raise FieldError("options", f"is empty but answer is {gold!r}")
    else:
        answer, task_type = gold, open_task_type(gold, meta, ctx, task_type)
    source = record.get("source") if isinstance(record.get("source"), str) else ""
    source = source or ctx.get("source") or ctx["stem"]
    domain = record.get("domain") if isinstance(record.get("domain"), str) else ""
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=need_str(record, "question"),
                       options=options, answer=answer, task_type=task_type,
                       domain=domain or infer_domain(source), source=source, metadata=meta)


# ---------------------------------------------------------------- BioMRC, DDXPlus, HealthFact

_BIOMRC_ENTITY = re.compile(r"^\s*(@entity\d+)\s*(?:::\s*(.*))?$", re.DOTALL)
_NAME_LIST = re.compile(r"\[[^\[\]]*\]\s*\)?\s*$")


def _biomrc_entity(entry: Any, field: str) -> tuple[str, str]:
    """``("@entity5", "atrial fibrillation")`` from ``"@entity5 :: ('UMLS:C0004238', ['atrial
    fibrillation', 'AF'])"``: the tag and the first name in the trailing list of names (the
    whole description when there is no such list)."""
    if not isinstance(entry, str):
        raise FieldError(field, f"must hold strings '@entityN :: ...', got {type(entry).__name__}")
    m = _BIOMRC_ENTITY.match(entry)
    if not m:
        raise FieldError(field, f"entry {entry[:60]!r} does not start with an '@entityN' tag")
    tag, rest = m.group(1), (m.group(2) or "").strip()
    names = _NAME_LIST.search(rest)
    if names:
        try:
            parsed = ast.literal_eval(names.group(0).rstrip(" )"))
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], str) and parsed[0].strip():
            return tag, parsed[0].strip()
    return tag, rest


#: How BioMRC titles write the blank (``XXXX`` in the release; ``@placeholder`` in some copies).
BIOMRC_BLANKS = ("XXXX", "@placeholder")


@register_format("biomrc", lambda r: _is_dict(r) and "entities_list" in r and "abstract" in r and "title" in r)
def biomrc(record: dict, index: int, ctx: dict) -> MedQuestion:
    """BioMRC (Hugging Face ``biomrc``): a cloze over a PubMed title. ``abstract`` (the context,
    entities written ``@entityN``), ``title`` with the blank written ``XXXX``, ``entities_list``
    (``"@entityN :: (id, [names])"``, the candidates) and ``answer`` (one of those entries, or
    its tag). Multiple choice over the candidates, in the listed order; option text
    ``"@entityN (first name)"``."""
    title = need_str(record, "title")
    blank = next((b for b in BIOMRC_BLANKS if b in title), None)
    if blank is None:
        raise FieldError("title", f"has no {' or '.join(map(repr, BIOMRC_BLANKS))} placeholder to fill")
    entities = record.get("entities_list")
    if not isinstance(entities, list) or len(entities) < 2:
        raise FieldError("entities_list", "must be a list of at least two '@entityN :: ...' candidates")
    tags, texts = [], []
    for entry in entities:
        tag, name = _biomrc_entity(entry, "entities_list")
        if tag in tags:
            raise FieldError("entities_list", f"lists {tag} twice")
        tags.append(tag)
        texts.append(f"{tag} ({name})" if name and name != tag else tag)
    options = lettered(texts, "entities_list")
    answer_tag, _ = _biomrc_entity(need_str(record, "answer"), "answer")
    if answer_tag not in tags:
        raise FieldError("answer", f"is {answer_tag}, which is not in entities_list ({', '.join(tags)})")
    meta = {k: v for k, v in record.items() if k not in ("abstract", "title", "entities_list", "answer", "id")}
    meta["context"] = need_str(record, "abstract")
    meta["answer_entity"] = record["answer"]
    question = f"Title: {title}\nWhich entity of the abstract should replace {blank} in the title?"
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=question, options=options,
                       answer=LETTERS[tags.index(answer_tag)], source=ctx.get("source") or "BioMRC",
                       domain="biomedical_literature", metadata=meta)


def _literal(value: Any, field: str, kind: type) -> Any:
    """A list given as JSON or as the Python literal the DDXPlus CSV release writes."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise FieldError(field, f"is not a {kind.__name__} literal: {value[:60]!r}") from None
    if not isinstance(value, kind):
        raise FieldError(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


DDXPLUS_FIELDS = ("AGE", "SEX", "PATHOLOGY", "EVIDENCES", "INITIAL_EVIDENCE", "DIFFERENTIAL_DIAGNOSIS")


@register_format("ddxplus", lambda r: _is_dict(r) and "PATHOLOGY" in r and "DIFFERENTIAL_DIAGNOSIS" in r)
def ddxplus(record: dict, index: int, ctx: dict) -> MedQuestion:
    """DDXPlus patient rows (the public release's CSV, or JSON lines with the same columns):
    ``AGE``, ``SEX``, ``PATHOLOGY`` (the gold), ``EVIDENCES`` and ``INITIAL_EVIDENCE``
    (evidence codes such as ``E_48`` or ``E_54_@_V_161``, kept as codes: the release's
    ``release_evidences.json`` is not applied), ``DIFFERENTIAL_DIAGNOSIS`` (``[[name, prob],
    ...]``). Multiple choice over the differential in its order (at most 26, the gold kept);
    ``PATHOLOGY`` missing from it is added as the last option."""
    gold = need_str(record, "PATHOLOGY")
    ddx = _literal(record.get("DIFFERENTIAL_DIAGNOSIS"), "DIFFERENTIAL_DIAGNOSIS", list)
    names: list[str] = []
    for item in ddx:
        name = item[0] if isinstance(item, (list, tuple)) and item else item
        if not isinstance(name, str) or not name.strip():
            raise FieldError("DIFFERENTIAL_DIAGNOSIS", f"entry {item!r} is not [pathology, probability]")
        if name.strip() not in names:
            names.append(name.strip())
    if gold not in names:
        names.append(gold)
    if len(names) > len(LETTERS):  # the most probable 26, the gold always among them
        keep = names[: len(LETTERS) - 1]
        names = keep + [gold if gold not in keep else names[len(LETTERS) - 1]]
    if len(names) < 2:
        raise FieldError("DIFFERENTIAL_DIAGNOSIS", "gives no alternative to PATHOLOGY")
    evidences = _literal(record.get("EVIDENCES", []), "EVIDENCES", list)
    age = need_str(record, "AGE")
    sex = {"M": "male", "F": "female"}.get(need_str(record, "SEX").upper(), need_str(record, "SEX"))
    initial = need_str(record, "INITIAL_EVIDENCE")
    question = (f"A {age}-year-old {sex} patient. Initial evidence: {initial}. "
                f"Evidences: {', '.join(str(e) for e in evidences)}.\nWhat is the most likely diagnosis?")
    options = lettered(names, "DIFFERENTIAL_DIAGNOSIS")
    meta = {k: v for k, v in record.items() if k not in (*DDXPLUS_FIELDS, "id")}
    meta.update({"age": age, "sex": sex, "initial_evidence": initial, "evidences": evidences})
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=question, options=options,
                       answer=LETTERS[names.index(gold)], source=ctx.get("source") or "DDXPlus",
                       domain="diagnosis", metadata=meta)


HEALTHFACT_LABELS = ("true", "false", "mixture", "unproven")
#: Hugging Face ``health_fact`` stores the label as a class index in this order (-1: none).
HEALTHFACT_HF_ORDER = ("false", "mixture", "true", "unproven")


@register_format("healthfact", lambda r: _is_dict(r) and "claim" in r and "label" in r and "question" not in r)
def healthfact(record: dict, index: int, ctx: dict) -> MedQuestion:
    """HealthFact / PUBHEALTH claims: ``claim``, ``explanation`` (the fact-checkers' summary,
    the context, as in MedS3's copy), ``label`` ``true``/``false``/``mixture``/``unproven``
    (or the Hugging Face ``health_fact`` class index 0-3), ``claim_id``. Multiple choice over
    the four labels, A true, B false, C mixture, D unproven."""
    label = record.get("label")
    if isinstance(label, int) and not isinstance(label, bool):
        if not 0 <= label < len(HEALTHFACT_HF_ORDER):
            raise FieldError("label", f"is {label}, expected a class index 0-3 (-1 marks an unlabelled claim)")
        label = HEALTHFACT_HF_ORDER[label]
    label = need_str({"label": label}, "label").lower()
    if label not in HEALTHFACT_LABELS:
        raise FieldError("label", f"is {label!r}, expected one of {', '.join(HEALTHFACT_LABELS)}")
    claim = need_str(record, "claim")
    meta = {k: v for k, v in record.items() if k not in ("claim", "label", "explanation", "claim_id", "id")}
    explanation = record.get("explanation")
    if isinstance(explanation, str) and explanation.strip():
        meta["context"] = explanation.strip()
    meta["answer_text"] = label
    options = dict(zip("ABCD", HEALTHFACT_LABELS))
    qid = record_id(record, "claim_id", "") or record_id(record, "id", f"{ctx['stem']}_{index}")
    return MedQuestion(id=qid, question=f"Claim: {claim}\nIs this health claim true, false, a mixture of true "
                                        "and false, or unproven?", options=options,
                       answer="ABCD"[HEALTHFACT_LABELS.index(label)], source=ctx.get("source") or "HealthFact",
                       domain="health_fact_checking", metadata=meta)


#: Detection order: the most specific formats first (MedQA also has question/options).
DETECTION_ORDER = ("medqa", "medmcqa", "pubmedqa", "headqa", "biomrc", "ddxplus", "healthfact", "meds3_conversations",
                   "meds3", "mmlu")


def detect_format(record: Any) -> str | None:
    """Name of the first registered format whose detector accepts ``record``, else None."""
    names = list(DETECTION_ORDER) + [n for n in FORMATS if n not in DETECTION_ORDER]
    for name in names:
        if FORMATS[name].detect(record):
            return name
    return None
