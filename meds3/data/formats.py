"""Record converters, one per public dataset format, registered by name.

A converter turns one raw record into a :class:`MedQuestion` or raises
:class:`FieldError` naming the field at fault; the loader adds file and place. A new
format is one function registered with :func:`register_format`.
"""

from __future__ import annotations

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


def infer_open_task_type(answer: str) -> str:
    """Task type of an open-answer question whose record does not state one.

    Yes/no/maybe golds are ``yes_no``; everything else is ``span`` (token F1), never
    ``numeric``: a numeric check needs a tolerance, which only the record can state.
    """
    return "yes_no" if answer.strip().casefold() in YES_NO_MAYBE else "span"


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


_OPTION_LINE = re.compile(r"^\(?([A-Z])[.)]\s+(.+)$")


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """Split ``question\\nA. x\\nB. y`` into the question and its lettered options.

    Only a trailing run of lines lettered A, B, C, ... in order counts as options.
    """
    lines = text.rstrip().split("\n")
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
    question = "\n".join(lines[: i + 1 + start]).strip()
    return question, options


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
    else:
        answer, task_type = gold, infer_open_task_type(gold)
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
    if options:
        answer, task_type = letter_answer(gold, options), task_type or "multiple_choice"
    elif task_type == "multiple_choice":
        raise FieldError("options", "is empty but task_type is multiple_choice")
    elif task_type is None and len(gold) == 1 and gold in LETTERS:
        # A bare option letter with no options is a lost options field, not an open answer.
        raise FieldError("options", f"is empty but answer is {gold!r}")
    else:
        answer, task_type = gold, task_type or infer_open_task_type(gold)
    meta = record.get("metadata") or {}
    if not isinstance(meta, dict):
        raise FieldError("metadata", f"must be a mapping, got {type(meta).__name__}")
    meta = {**{k: v for k, v in record.items() if k not in NORMALIZED_FIELDS}, **meta}
    source = record.get("source") if isinstance(record.get("source"), str) else ""
    source = source or ctx.get("source") or ctx["stem"]
    domain = record.get("domain") if isinstance(record.get("domain"), str) else ""
    return MedQuestion(id=record_id(record, "id", f"{ctx['stem']}_{index}"), question=need_str(record, "question"),
                       options=options, answer=answer, task_type=task_type,
                       domain=domain or infer_domain(source), source=source, metadata=meta)


#: Detection order: the most specific formats first (MedQA also has question/options).
DETECTION_ORDER = ("medqa", "medmcqa", "pubmedqa", "headqa", "meds3_conversations", "meds3", "mmlu")


def detect_format(record: Any) -> str | None:
    """Name of the first registered format whose detector accepts ``record``, else None."""
    names = list(DETECTION_ORDER) + [n for n in FORMATS if n not in DETECTION_ORDER]
    for name in names:
        if FORMATS[name].detect(record):
            return name
    return None
