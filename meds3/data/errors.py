"""Errors and load reports of the data layer."""

from __future__ import annotations

from dataclasses import dataclass, field


class DataError(ValueError):
    """A data file or record is malformed.

    The message always names the file, the place in it (``line 17`` or
    ``record 3``) and, where one is at fault, the field:
    ``seed.jsonl:17: field 'answer' is 'E' but options are A-D``.
    """

    def __init__(self, path: str, where: str | None, message: str, field: str | None = None):
        self.path = str(path)
        self.where = where
        self.field = field
        self.reason = message
        place = f"{self.path}:{where}" if where else self.path
        prefix = f"field '{field}' " if field and not message.startswith("field ") else ""
        super().__init__(f"{place}: {prefix}{message}")


class FieldError(ValueError):
    """Raised by record converters; the loader adds the file and place."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


@dataclass
class SkippedRecord:
    """One record that ``on_error="skip"`` left out, and why."""

    where: str
    field: str | None
    reason: str


@dataclass
class LoadReport:
    """What a load read: how many questions loaded and which records were skipped."""

    path: str
    format: str
    loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    def summary(self) -> str:
        """One line per skipped record under a header line; '' when nothing was skipped."""
        if not self.skipped:
            return ""
        lines = [f"{self.path}: loaded {self.loaded}, skipped {len(self.skipped)} malformed record(s):"]
        for s in self.skipped:
            field_part = f"field '{s.field}': " if s.field else ""
            lines.append(f"  {s.where}: {field_part}{s.reason}")
        return "\n".join(lines)


class QuestionList(list):
    """A ``list[MedQuestion]`` that also carries the :class:`LoadReport` of its load."""

    def __init__(self, items=(), report: LoadReport | None = None):
        super().__init__(items)
        self.report = report
