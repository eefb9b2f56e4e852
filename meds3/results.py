"""Typed results of the generating stages: what a rollout and an evaluation leave behind.

``run_rollout`` returns a :class:`RolloutResult`, ``run_eval`` an :class:`EvalResult`, and the
trainers a :class:`meds3.train.common.TrainResult`; the evolution loop records each in its
stage manifest with ``to_dict()`` and reads it back with ``from_dict()``. ``from_dict`` also
reads the plain summaries that earlier versions wrote (``summary.json``, manifests), so a run
started before these classes resumes.

Both classes can still be read like the summary dict they replace (``result["trees"]``,
``"ray" in result``): :class:`SummaryView`. New code reads the attributes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional


class SummaryView:
    """Read access to ``to_dict()`` by key, so code written for the summary dicts these
    results replace keeps working."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def get(self, key: str, default: Any = None) -> Any:
        """``to_dict().get(key, default)``."""
        return self.to_dict().get(key, default)

    def keys(self):
        """The keys of :meth:`to_dict` (the summary's layout)."""
        return self.to_dict().keys()


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return dict(data)


def _count(data: dict[str, Any], key: str, what: str) -> int:
    value = data.pop(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: '{key}' must be a count (an integer >= 0), got {value!r}")
    return value


@dataclass
class RolloutResult(SummaryView):
    """What a rollout job stored: every tree in its store, counted.

    Attributes:
        output_dir: the job's folder (``trees/``, ``summary.json``, ``config.yaml``).
        trees: trees stored (the newest per question).
        complete, failed: of those, searched to the end / stopped by an engine failure.
        with_correct_leaf: trees with at least one correct Finish leaf (what the policy trains on).
        details: the rest of ``summary.json``: nodes and tokens per tree, correct-leaf rate by
            task type and domain, stop reasons, ``tree_attempts``, and ``ray`` figures on Ray.
    """

    output_dir: str
    trees: int = 0
    complete: int = 0
    failed: int = 0
    with_correct_leaf: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    COUNTS = ("trees", "complete", "failed", "with_correct_leaf")

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``'s layout: the counts, ``output_dir``, then every detail (a copy)."""
        return {**{k: getattr(self, k) for k in self.COUNTS}, "output_dir": self.output_dir,
                **copy.deepcopy(self.details)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], output_dir: Optional[str] = None) -> RolloutResult:
        """Read :meth:`to_dict`, or a rollout summary written before this class (no
        ``output_dir``: pass the stage's folder as ``output_dir``).

        Raises:
            ValueError: not a mapping, a count that is not an integer >= 0, or no ``output_dir``
                in the data or the arguments.
        """
        data = _mapping(data, "rollout result")
        counts = {k: _count(data, k, "rollout result") for k in cls.COUNTS}
        folder = data.pop("output_dir", None) or output_dir
        if not folder:
            raise ValueError("rollout result: no 'output_dir' (a summary from an earlier version: pass output_dir=)")
        return cls(output_dir=str(folder), **counts, details=data)


@dataclass
class EvalResult(SummaryView):
    """What an evaluation job scored.

    Attributes:
        output_dir: the job's folder (``responses/``, ``results.*``, plots).
        results: one row per dataset, budget and selector (and ``greedy``, ``prm-mcts``):
            dataset, budget, selector, n, questions, accuracy, ci_low, ci_high, correct,
            answered, tokens_per_question.
        accuracy_vs_n: the same rows for each N of the accuracy-vs-N curve.
        ray: the generation's scheduling figures when it ran on Ray now (None otherwise).
    """

    output_dir: str
    results: list[dict[str, Any]] = field(default_factory=list)
    accuracy_vs_n: list[dict[str, Any]] = field(default_factory=list)
    ray: Optional[dict[str, Any]] = None

    def accuracy(self, dataset: str, selector: str, budget: Optional[int] = None) -> Optional[float]:
        """The accuracy of one table row (None: no such row, e.g. a PRM selector without a PRM)."""
        for row in self.results:
            if (row.get("dataset"), row.get("selector"), row.get("budget")) == (dataset, selector, budget):
                return row.get("accuracy")
        return None

    def to_dict(self) -> dict[str, Any]:
        """The summary's layout (``results.json`` holds the same rows): results,
        accuracy_vs_n, output_dir, and ray when it ran on Ray."""
        out = {"results": copy.deepcopy(self.results), "accuracy_vs_n": copy.deepcopy(self.accuracy_vs_n),
               "output_dir": self.output_dir}
        if self.ray is not None:
            out["ray"] = copy.deepcopy(self.ray)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], output_dir: Optional[str] = None) -> EvalResult:
        """Read :meth:`to_dict` (every version wrote this layout; ``output_dir`` fills a
        missing folder).

        Raises:
            ValueError: not a mapping, rows that are not lists of objects, an unknown key, or
                no ``output_dir``.
        """
        data = _mapping(data, "eval result")
        unknown = sorted(set(data) - {"results", "accuracy_vs_n", "output_dir", "ray"})
        if unknown:
            raise ValueError(f"eval result: unknown key(s) {', '.join(map(repr, unknown))}")
        for key in ("results", "accuracy_vs_n"):
            rows = data.get(key) or []
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError(f"eval result: '{key}' must be a list of rows (objects)")
        folder = data.get("output_dir") or output_dir
        if not folder:
            raise ValueError("eval result: no 'output_dir'")
        return cls(str(folder), list(data.get("results") or []), list(data.get("accuracy_vs_n") or []),
                   data.get("ray"))
