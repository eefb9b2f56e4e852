"""Seed mixes: draw a reproducible sample of questions from several files by a manifest.

A manifest (YAML) lists files and how many questions to draw from each::

    seed: 0
    sources:
      - path: clinical_calc.jsonl          # relative to the manifest's folder
        n: 200
      - path: ../../shared/data/seed/pubmedqa_pqal_nontest500.jsonl
        n: 100
      - path: ../../shared/data/seed/headqa_en_dev.jsonl   # n omitted: every question
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from meds3.config import ConfigError, load_config
from meds3.data.errors import DataError
from meds3.data.loaders import load_questions
from meds3.data.question import MedQuestion
from meds3.shipped import resolve_shipped

logger = logging.getLogger(__name__)


@dataclass
class MixSource:
    """One file of a seed mix."""

    path: str
    n: Optional[int] = None  # questions to draw; None = all of them
    format: str = "auto"  # a loader format name, see meds3.data.load_questions
    on_error: Literal["raise", "skip"] = "raise"  # "skip" drops malformed records with a report

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")


@dataclass
class MixManifest:
    """A seed mix: sources and the seed of the draw."""

    sources: list[MixSource] = field(default_factory=list)
    seed: int = 0  # same manifest and seed -> same mix
    shuffle: bool = True  # interleave sources in the output instead of file order

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources must list at least one file")


def build_mix(manifest: MixManifest | str | os.PathLike, base_dir: str | os.PathLike | None = None
              ) -> list[MedQuestion]:
    """Draw the questions a manifest asks for.

    Args:
        manifest: a :class:`MixManifest` or the path of its YAML file.
        base_dir: folder relative source paths start from (default: the manifest's folder,
            or the working directory for an in-memory manifest).

    Returns:
        The drawn questions, each file's draw reproducible from ``seed``.

    Raises:
        ConfigError: a bad manifest. DataError: a source file that is malformed, or that has
            fewer questions than asked, or an id that two sources share.
    """
    if not isinstance(manifest, MixManifest):
        manifest = resolve_shipped(manifest)  # seed_data/... missing here: the copy shipped with meds3
        base_dir = base_dir or Path(manifest).parent
        manifest = load_config(MixManifest, manifest)
    base = Path(base_dir or ".")
    drawn: list[MedQuestion] = []
    owner: dict[str, str] = {}
    for index, src in enumerate(manifest.sources):
        path = Path(src.path) if Path(src.path).is_absolute() else base / src.path
        questions = load_questions(path, format=src.format, on_error=src.on_error)
        n = len(questions) if src.n is None else src.n
        if n > len(questions):
            raise DataError(str(path), None, f"the manifest asks for {n} questions but the file has "
                                             f"{len(questions)} valid ones")
        # One generator per source so adding a source never changes the others' draws.
        rng = random.Random(f"{manifest.seed}:{index}:{src.path}")
        picked = rng.sample(list(questions), n) if n < len(questions) else list(questions)
        for q in picked:
            if q.id in owner:
                raise DataError(str(path), None, f"id {q.id!r} is also in {owner[q.id]}; "
                                                 "ids must be unique across a mix")
            owner[q.id] = str(path)
        logger.info("mix: %d of %d questions from %s", n, len(questions), path)
        drawn.extend(picked)
    if manifest.shuffle:
        random.Random(manifest.seed).shuffle(drawn)
    return drawn


__all__ = ["ConfigError", "MixManifest", "MixSource", "build_mix"]
