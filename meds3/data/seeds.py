"""Seed-set stage: the config of ``meds3 seeds generate`` and its entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from meds3.data.loaders import save_questions
from meds3.data.question import MedQuestion

LEVELS = ("easy", "medium", "hard")


@dataclass
class SeedGenConfig:
    """Generated clinical-calculation seed questions (exact, rule-checkable answers)."""

    n: int = 500  # number of questions
    seed: int = 0  # same seed -> byte-identical file
    levels: list[str] = field(default_factory=lambda: list(LEVELS))  # each calculator cycles through these
    calculators: Optional[list[str]] = None  # registry names; None = every calculator
    output: str = "seed_data/clinical_calc.jsonl"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels:
            raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {self.levels}")
        if self.calculators is not None:
            from meds3.data.calculators import CALCULATORS

            unknown = [c for c in self.calculators if c not in CALCULATORS]
            if unknown or not self.calculators:
                raise ValueError(f"calculators: unknown {unknown or 'empty list'}; "
                                 f"known: {', '.join(sorted(CALCULATORS))}")


def generate_seeds(config: SeedGenConfig) -> list[MedQuestion]:
    """Generate the questions a :class:`SeedGenConfig` describes (no I/O)."""
    from meds3.data.seedgen import generate_calc_questions

    return generate_calc_questions(config.n, seed=config.seed, levels=tuple(config.levels),
                                   calculators=config.calculators)


def write_seeds(config: SeedGenConfig) -> Path:
    """Generate and write the seed file atomically; returns its path."""
    return save_questions(config.output, generate_seeds(config))
