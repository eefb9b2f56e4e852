"""The verifier interface, its result types and the registry of verifiers by task type."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

from meds3.data.question import MedQuestion, add_task_type


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one model output against one question.

    Attributes:
        correct: ``True``/``False``, or ``None`` when no answer could be found
            (unverifiable: no statement, two different answers, a negated or cut-off
            statement).
        extracted: the normalized answer read from the text (an option letter such as
            ``"B"``, ``"yes"``, a float written as ``str(float)``, a text span), or
            ``None``.
        reason: short human-readable explanation.
    """

    correct: bool | None
    extracted: str | None
    reason: str

    @property
    def verifiable(self) -> bool:
        """True when an answer was found and judged (``correct`` is not ``None``)."""
        return self.correct is not None


@dataclass(frozen=True)
class Extraction:
    """What a verifier read from a text: the normalized ``answer`` (``None`` if nothing
    usable was stated) and a short ``reason`` saying how it was found or why not."""

    answer: str | None
    reason: str


class Verifier(abc.ABC):
    """How answers of one task type are read from model text and checked.

    Subclasses set :attr:`name` (through :func:`register_verifier`) and
    :attr:`option_names`, and implement :meth:`extract` and :meth:`check`. Both must be
    pure and must not raise on any model text; :meth:`validate` and :meth:`check` may
    raise ``ValueError`` for a question they cannot check.
    """

    #: Task type this verifier checks (set by :func:`register_verifier`).
    name: ClassVar[str] = ""
    #: Keyword options :meth:`check` understands (anything else passed to ``verify`` and
    #: unknown to every verifier is rejected).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def validate(self, question: MedQuestion, **options: Any) -> None:  # noqa: B027 -- optional check
        """Raise ``ValueError`` naming the question when its gold answer, its metadata or
        the keyword ``options`` cannot be used by this verifier; return ``None`` otherwise.
        :func:`meds3.verify.verify` calls it before reading the text, so that only
        question and option errors raise."""

    @abc.abstractmethod
    def extract(self, text: str, question: MedQuestion) -> Extraction:
        """Read the stated answer from model ``text`` (any string) for ``question``.

        Returns an :class:`Extraction`; never raises on the text.
        """

    @abc.abstractmethod
    def check(self, answer: str, question: MedQuestion, **options: Any) -> Verdict:
        """Judge an extracted ``answer`` against the question's gold answer.

        Returns a :class:`Verdict` with ``correct`` True or False and ``extracted`` =
        ``answer``. Raises ``ValueError`` for an unusable gold answer or option.
        """

    def verify(self, text: str, question: MedQuestion, **options: Any) -> Verdict:
        """Extract then check: the full verdict for ``text`` (see :func:`meds3.verify.verify`)."""
        found = self.extract(text, question)
        if found.answer is None:
            return Verdict(None, None, found.reason)
        verdict = self.check(found.answer, question, **options)
        return Verdict(verdict.correct, verdict.extracted, f"{verdict.reason}; {found.reason}")


#: Task type -> verifier class. Add a task type with :func:`register_verifier`.
VERIFIERS: dict[str, type[Verifier]] = {}

V = TypeVar("V", bound=type[Verifier])


def register_verifier(name: str) -> Callable[[V], V]:
    """Class decorator registering a :class:`Verifier` subclass for task type ``name``.

    Takes the task type name; returns the decorator, which sets ``cls.name`` and returns
    the class unchanged. Raises ``ValueError`` if ``name`` is already registered to
    another class.
    """

    def decorate(cls: V) -> V:
        existing = VERIFIERS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"verifier {name!r} is already registered ({existing.__name__})")
        cls.name = name
        VERIFIERS[name] = cls
        add_task_type(name)  # questions of the new type are now accepted by MedQuestion
        return cls

    return decorate


def get_verifier(task_type: str) -> Verifier:
    """Return a verifier instance for ``task_type``.

    Raises ``ValueError`` listing the registered task types when ``task_type`` has none.
    """
    try:
        return VERIFIERS[task_type]()
    except (KeyError, TypeError):
        known = ", ".join(sorted(VERIFIERS))
        raise ValueError(f"no verifier for task type {task_type!r}; known: {known}") from None


def known_options() -> frozenset[str]:
    """All keyword options some registered verifier understands."""
    return frozenset().union(*(cls.option_names for cls in VERIFIERS.values()))
