"""The question record every stage passes around."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Task types the verifiers know how to check (``meds3.verify``); a verifier registered
#: under a new name adds it (see :func:`add_task_type`).
TASK_TYPES: list[str] = ["multiple_choice", "yes_no", "numeric", "exact", "span"]


def add_task_type(name: str) -> None:
    """Accept ``name`` as a task type (called by ``meds3.verify.register_verifier``)."""
    if name not in TASK_TYPES:
        TASK_TYPES.append(name)

#: Option letters in order; options are always keyed by a prefix of this.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class MedQuestion:
    """One medical question with a rule-checkable answer.

    Attributes:
        id: unique within its source file.
        question: the question text, options not appended.
        options: option letter -> option text, in order (``{}`` for open answers).
        answer: the gold option letter for multiple choice, else the gold text
            (``"yes"``, ``"12.5"``, a span).
        task_type: one of :data:`TASK_TYPES`; decides which verifier checks it.
        domain: coarse field (``"clinical_calculation"``, ``"biomedical_qa"``, ...).
        source: dataset the question came from.
        metadata: everything else (``context`` for PubMedQA abstracts, numeric
            ``tolerance``/``range`` for calculators, original fields).
    """

    id: str
    question: str
    options: dict[str, str] = field(default_factory=dict)
    answer: str = ""
    task_type: str = "multiple_choice"
    domain: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type {self.task_type!r} is not one of {', '.join(TASK_TYPES)}")

    @property
    def context(self) -> str:
        """Supporting passage shown before the question (PubMedQA abstracts), or ''."""
        return str(self.metadata.get("context") or "")

    @property
    def answer_text(self) -> str:
        """The gold answer as text: the option text for multiple choice, else ``answer``."""
        if self.options and self.answer in self.options:
            return self.options[self.answer]
        return self.answer

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "MedQuestion":
        """Build from :meth:`to_dict` output (the meds3 JSONL format)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})
