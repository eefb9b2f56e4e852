"""Load questions from any supported file, with file:line errors for malformed records."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from meds3.data.errors import DataError, FieldError, LoadReport, QuestionList, SkippedRecord
from meds3.data.formats import FORMATS, detect_format
from meds3.data.question import MedQuestion
from meds3.data.reader import (
    RawRecord,
    container_of,
    iter_csv,
    iter_json_array,
    iter_jsonl,
    load_json_document,
    read_bytes,
)
from meds3.data.validate import validate_question
from meds3.shipped import resolve_shipped

logger = logging.getLogger(__name__)

FORMAT_ALIASES = {"auto": "auto", "normalized": "meds3", "jsonl": "meds3", "medsss": "meds3_conversations",
                  "meds3-conversations": "meds3_conversations", "head-qa": "headqa", "medmcqa-0": "medmcqa",
                  "medmcqa-1": "medmcqa", "pubhealth": "healthfact", "health_fact": "healthfact",
                  "seer": "meds3"}

#: CSV files whose first row is a header naming these columns are read as dicts of that format.
CSV_HEADERS = {"ddxplus": {"PATHOLOGY", "DIFFERENTIAL_DIAGNOSIS"}}


@dataclass
class TypedLoadReport(LoadReport):
    """A :class:`LoadReport` that also says which task types the loader inferred.

    ``inferred_task_types`` counts loaded questions whose record stated no task type and
    whose type was read from the gold (``{"numeric": 3, "yes_no": 1}``); multiple choice
    from stated options is not counted.
    """

    inferred_task_types: dict[str, int] = field(default_factory=dict)

    def inferred_summary(self) -> str:
        """``"inferred task types: numeric 3, span 1"``, or '' when none was inferred."""
        if not self.inferred_task_types:
            return ""
        return "inferred task types: " + ", ".join(f"{k} {v}" for k, v in sorted(self.inferred_task_types.items()))


def _header_rows(records: list[RawRecord]) -> list[RawRecord] | None:
    """CSV rows as dicts keyed by the header row when that header is a known format's, else None."""
    first = next((r for r in records if r.error is None), None)
    if first is None or not isinstance(first.value, list):
        return None
    header = [str(c).strip() for c in first.value]
    if not any(cols <= set(header) for cols in CSV_HEADERS.values()):
        return None
    rows = []
    for r in records:
        if r is first:
            continue
        if r.error is not None or not isinstance(r.value, list):
            rows.append(r)
        elif len(r.value) != len(header):
            rows.append(RawRecord(r.where, error=f"has {len(r.value)} columns but the header has {len(header)}"))
        else:
            rows.append(RawRecord(r.where, value=dict(zip(header, r.value)), context=r.context))
    return rows


def _check_numeric_tolerance(value: Any) -> None:
    """ValueError unless ``value`` is None, a finite number >= 0, or a dict of numeric verifier settings."""
    if value is None:
        return
    if isinstance(value, dict):
        unknown = set(value) - {"tolerance", "abs_tolerance", "range"}
        if unknown:
            raise ValueError(f"numeric_tolerance keys must be tolerance, abs_tolerance or range, got {sorted(unknown)}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"numeric_tolerance must be None, a finite number >= 0 or a dict, got {value!r}")


def _document_records(path: Path, doc: Any) -> Iterator[RawRecord]:
    """Records of a whole-file JSON document: an array, HEAD-QA's exams, or a dict keyed by id."""
    if isinstance(doc, list):
        yield from iter_json_array(doc)
    elif isinstance(doc, dict) and isinstance(doc.get("exams"), dict):
        for exam, body in doc["exams"].items():
            rows = body.get("data") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                yield RawRecord(f"exams.{exam}", error="expected a 'data' list of questions")
                continue
            ctx = {"exam": exam, "language": doc.get("language"),
                   **{k: body.get(k) for k in ("category", "year")}}
            for i, rec in enumerate(rows):
                yield RawRecord(f"exams.{exam}.data[{i}]", value=rec, context=ctx)
    elif isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        for key, rec in doc.items():
            yield RawRecord(f"record '{key}'", value=rec, context={"key": str(key)})
    elif isinstance(doc, dict):
        yield RawRecord("record 0", value=doc)
    else:
        raise DataError(str(path), None, f"expected JSON objects, the file holds a {type(doc).__name__}")


def read_records(path: Path, container: str | None = None) -> tuple[str, list[RawRecord]]:
    """All raw records of a file and the container kind they came in."""
    data = read_bytes(path)
    container = container or container_of(path, data)
    if container == "csv":
        return container, list(iter_csv(data))
    if container == "json":
        return container, list(_document_records(path, load_json_document(path, data)))
    records = list(iter_jsonl(data))
    only = records[0].value if len(records) == 1 else None
    if isinstance(only, dict) and only and (isinstance(only.get("exams"), dict)
                                            or all(isinstance(v, dict) for v in only.values())):
        # A one-line document keyed by id (ori_pqal.json written without indentation).
        return "json", list(_document_records(path, only))
    return container, records


def _medmcqa_cop_base(records: list[RawRecord], requested: str) -> int:
    """0 if ``cop`` is 0-based (Hugging Face copy), 1 if 1-based (original release)."""
    if requested in ("medmcqa-0", "medmcqa-1"):
        return int(requested[-1])
    cops = {r.value.get("cop") for r in records if isinstance(r.value, dict)}
    cops = {int(c) for c in cops if (isinstance(c, int) and not isinstance(c, bool) and abs(c) < 100)
            or (isinstance(c, str) and c.isdigit() and len(c) < 3)}
    if 0 in cops:
        return 0
    if 4 not in cops:
        logger.warning("MedMCQA 'cop' values %s fit both 0-3 and 1-4; assuming the original 1-4 "
                       "(pass format='medmcqa-0' for the Hugging Face copy)", sorted(cops))
    return 1


def known_formats() -> list[str]:
    """Every name ``load_questions(format=...)`` accepts: ``auto``, the formats and their aliases."""
    return ["auto", *sorted(set(FORMATS) | (set(FORMAT_ALIASES) - {"auto"}))]


def load_questions(path: str | os.PathLike, format: str = "auto", on_error: str = "raise",
                   source: str | None = None, numeric_tolerance: Any = None) -> QuestionList:
    """Load every question of a data file.

    Args:
        path: a JSONL, JSON or CSV file in one of the formats of :mod:`meds3.data.formats`
            (meds3/normalized JSONL, MedQA, MedMCQA, PubMedQA ``ori_pqal.json``, MMLU CSV,
            HEAD-QA JSON, MedS3 conversations).
        format: ``"auto"`` (detect from the first readable record) or a format name.
        on_error: ``"raise"`` stops at the first malformed record; ``"skip"`` loads the valid
            records and logs and returns what was skipped (``result.report``).
        source: dataset name stored on each question (default: from the record or file).
        numeric_tolerance: tolerance given to questions inferred ``numeric`` (a plain-number gold
            with no ``task_type``) whose record states none: ``None`` (default) is half a unit
            in the gold's last stated digit (``"24.2"`` -> ±0.05); a number is a fixed absolute
            tolerance; a dict (``{"tolerance": 0.01}``) is stored as the verifier settings.
            Which task types were inferred is in ``result.report.inferred_task_types``.

    Returns:
        A :class:`QuestionList` (a ``list[MedQuestion]`` with ``.report``, a
        :class:`TypedLoadReport`).

    Raises:
        DataError: naming file, line/record and field, for a malformed record (with
            ``on_error="raise"``) or a file-level problem (missing, empty, undetectable
            format). A record is malformed also when its question cannot be stored or
            checked (:func:`meds3.data.validate.validate_question`: a numeric gold ``"abc"``
            or ``NaN``, a tolerance ``Infinity``, a lone surrogate, nesting past 64 levels).
        ValueError: ``on_error`` or ``format`` is not a known value.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    _check_numeric_tolerance(numeric_tolerance)
    path = resolve_shipped(path)  # seed_data/... missing here: the copy shipped with meds3 (meds3.shipped)
    requested = format
    fmt = FORMAT_ALIASES.get(format, format)
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(known_formats())}")
    container = "csv" if fmt == "mmlu" else None
    container, records = read_records(path, container)
    if container == "csv" and fmt != "mmlu":
        rows = _header_rows(records)
        if rows is not None:
            records = rows
    if fmt == "auto":
        first = next((r.value for r in records if r.error is None), None)
        fmt = detect_format(first) if first is not None else None
        if fmt is None:
            bad = next((r for r in records if r.error), None)
            if first is None and bad is not None:
                raise DataError(str(path), bad.where, bad.error)
            keys = sorted(first) if isinstance(first, dict) else type(first).__name__
            raise DataError(str(path), None, f"cannot detect the format (first record: {keys}); "
                                             f"pass format= one of {', '.join(sorted(FORMATS))}")
    ctx_base = {"stem": path.stem, "source": source, "numeric_tolerance": numeric_tolerance}
    if fmt == "medmcqa":
        ctx_base["cop_base"] = _medmcqa_cop_base(records, requested)
    convert = FORMATS[fmt].convert
    report = TypedLoadReport(str(path), fmt)
    inferred: Counter[str] = Counter()
    questions: list[MedQuestion] = []
    seen: dict[str, str] = {}

    def fail(where: str, field: str | None, reason: str) -> None:
        if on_error == "raise":
            raise DataError(str(path), where, reason, field)
        report.skipped.append(SkippedRecord(where, field, reason))

    for index, raw in enumerate(records):
        if raw.error is not None:
            fail(raw.where, None, raw.error)
            continue
        if not isinstance(raw.value, (dict, list)) or (fmt != "mmlu" and not isinstance(raw.value, dict)):
            fail(raw.where, None, f"expected a JSON object, got {type(raw.value).__name__}")
            continue
        try:
            ctx = {**ctx_base, **raw.context}
            q = convert(raw.value, index, ctx)
            validate_question(q)
        except FieldError as exc:
            fail(raw.where, exc.field, str(exc))
            continue
        except KeyError as exc:  # a converter of an explicitly asked format on another format's record
            fail(raw.where, str(exc.args[0]) if exc.args else None, f"is missing (is this a {fmt} file?)")
            continue
        except (ValueError, TypeError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
            # why: a converter meeting data it did not foresee reports the record, not a traceback
            fail(raw.where, None, f"cannot read the record ({type(exc).__name__}: {exc})")
            continue
        if q.id in seen:
            fail(raw.where, "id", f"duplicate id {q.id!r} (first at {seen[q.id]})")
            continue
        seen[q.id] = raw.where
        questions.append(q)
        if ctx.get("inferred_task_type"):
            inferred[ctx["inferred_task_type"]] += 1
    report.loaded = len(questions)
    report.inferred_task_types = dict(sorted(inferred.items()))
    if report.skipped:
        logger.warning("%s", report.summary())
    return QuestionList(questions, report)


def save_questions(path: str | os.PathLike, questions: Iterable[MedQuestion]) -> Path:
    """Write questions as meds3 JSONL atomically (temporary file, fsync, rename).

    Returns the path written; :func:`load_questions` reads it back to equal objects.
    """
    from meds3.io import atomic_open

    path = Path(path)
    with atomic_open(path) as f:
        for q in questions:
            f.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    return path
