"""Read raw records (JSON lines, a JSON document, CSV rows) with their places in the file.

Decoding problems (BOM, CRLF, non-UTF-8 bytes, invalid JSON) are reported per line so a
single bad line never hides the rest of the file.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from meds3.data.errors import DataError

BOM = b"\xef\xbb\xbf"


@dataclass
class RawRecord:
    """One record as read: its place (``line 3``, ``record 7``, ``record '1234'``) and value.

    ``error`` is set instead of ``value`` when the record could not be decoded at all.
    """

    where: str
    value: Any = None
    error: str | None = None
    context: dict = field(default_factory=dict)  # per-record facts from the enclosing document


def container_of(path: Path, data: bytes) -> str:
    """Guess how records are laid out: ``"csv"``, ``"json"`` (one document) or ``"jsonl"``."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    head = data.lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        first_line = data.lstrip().split(b"\n", 1)[0]
        try:
            json.loads(first_line.decode("utf-8", errors="strict"))
            return "jsonl"
        except (UnicodeDecodeError, ValueError, RecursionError):
            # A pretty-printed document spans lines; a broken first JSONL line does not parse
            # as a whole document either, and is then reported line by line.
            try:
                json.loads(data.decode("utf-8"))
                return "json"
            except (UnicodeDecodeError, ValueError, RecursionError):
                return "jsonl"
    return "jsonl"


def read_bytes(path: Path) -> bytes:
    """Read a file, stripping a UTF-8 byte-order mark; raise DataError if absent or empty."""
    if not path.exists():
        raise DataError(str(path), None, "file does not exist")
    if path.is_dir():
        raise DataError(str(path), None, "is a directory, expected a data file")
    data = path.read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data.strip():
        raise DataError(str(path), None, "file is empty")
    return data


def _decode_line(raw: bytes, lineno: int) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                      "re-save the file as UTF-8")


def iter_jsonl(data: bytes) -> Iterator[RawRecord]:
    """Yield one RawRecord per non-blank line; CRLF endings and a BOM are tolerated."""
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        where = f"line {lineno}"
        text, err = _decode_line(raw, lineno)
        if err:
            yield RawRecord(where, error=err)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRecord(where, error=f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:
            yield RawRecord(where, error=unreadable_json(exc))
            continue
        yield RawRecord(where, value=value)


def load_json_document(path: Path, data: bytes) -> Any:
    """Parse a whole-file JSON document; errors name the line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(str(path), f"line {line}",
                        f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"line {exc.lineno}",
                        f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(str(path), None, unreadable_json(exc)) from None


def unreadable_json(exc: Exception) -> str:
    """Why valid JSON syntax could not be read: nesting past Python's recursion limit, or an
    integer past its 4300-digit conversion limit."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read (lists or objects inside each other thousands of times)"
    return f"JSON value cannot be read ({exc})"


def iter_json_array(doc: list) -> Iterator[RawRecord]:
    """Yield the elements of a top-level JSON array as ``record i`` (0-based)."""
    for i, value in enumerate(doc):
        yield RawRecord(f"record {i}", value=value)


def iter_csv(data: bytes) -> Iterator[RawRecord]:
    """Yield CSV rows (lists of str) as ``line N``; undecodable lines are reported, not fatal."""
    lines = data.split(b"\n")
    good: list[str] = []
    bad: dict[int, str] = {}
    for lineno, raw in enumerate(lines, start=1):
        text, err = _decode_line(raw.rstrip(b"\r"), lineno)
        if err:
            bad[lineno] = err
            good.append("")  # keep line numbers aligned; an empty row is skipped below
        else:
            good.append(text)
    reader = csv.reader(io.StringIO("\n".join(good)))
    start = 1
    for row in reader:
        lineno = start
        start = reader.line_num + 1
        if lineno in bad:
            yield RawRecord(f"line {lineno}", error=bad.pop(lineno))
            continue
        if not row or all(not c.strip() for c in row):
            continue
        yield RawRecord(f"line {lineno}", value=row)
    for lineno, err in sorted(bad.items()):
        yield RawRecord(f"line {lineno}", error=err)
