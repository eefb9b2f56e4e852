"""Seed-set stage: the config of ``meds3 seeds generate`` and its entry point."""

from __future__ import annotations

import random
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
    choices: int = 0  # 0: open numeric answers; k >= 2: multiple choice with k options (one correct)
    output: str = "seed_data/clinical_calc.jsonl"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels:
            raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {self.levels}")
        if self.choices == 1 or not 0 <= self.choices <= 8:
            raise ValueError(f"choices must be 0 (open answers) or 2-8, got {self.choices}")
        if self.calculators is not None:
            from meds3.data.calculators import CALCULATORS

            unknown = [c for c in self.calculators if c not in CALCULATORS]
            if unknown or not self.calculators:
                raise ValueError(f"calculators: unknown {unknown or 'empty list'}; "
                                 f"known: {', '.join(sorted(CALCULATORS))}")


def generate_seeds(config: SeedGenConfig) -> list[MedQuestion]:
    """Generate the questions a :class:`SeedGenConfig` describes (no I/O)."""
    from meds3.data.seedgen import generate_calc_questions

    questions = generate_calc_questions(config.n, seed=config.seed, levels=tuple(config.levels),
                                        calculators=config.calculators)
    if config.choices:
        rng = random.Random(f"choices-{config.seed}")
        questions = [to_multiple_choice(q, config.choices, rng) for q in questions]
    return questions


# Wrong options: the value scaled or shifted by amounts a slip in a formula or a unit gives.
_FACTORS = (0.5, 0.67, 0.75, 0.8, 0.9, 1.1, 1.2, 1.25, 1.33, 1.5, 2.0)
_OFFSETS = (-3, -2, -1, 1, 2, 3)


def to_multiple_choice(question: MedQuestion, k: int, rng: random.Random) -> MedQuestion:
    """A generated numeric question as a ``k``-option multiple-choice one.

    The correct value is one option; the others are the value scaled or shifted, each
    outside the question's tolerance range and distinct after rounding, so exactly one
    option is right. Small models that cannot compute the value still pick an option, which
    gives a search correct leaves by chance (about 1/k) to learn from.

    Raises:
        ValueError: the question is not a generated numeric one (no ``decimals``/``range``).
    """
    meta = question.metadata
    if question.task_type != "numeric" or "decimals" not in meta or "range" not in meta:
        raise ValueError(f"question {question.id!r} is not a generated numeric question")
    decimals, (lo, hi) = int(meta["decimals"]), meta["range"]
    value = float(question.answer)
    unit = meta.get("unit", "")
    step = 10.0 ** -decimals
    candidates = {f"{value * f:.{decimals}f}" for f in _FACTORS}
    candidates |= {f"{value + o * max(step, 1.0 if decimals == 0 else step * 10):.{decimals}f}" for o in _OFFSETS}
    wrong = sorted(c for c in candidates
                   if not lo <= float(c) <= hi and (float(c) >= 0 or value < 0) and c != question.answer)
    if len(wrong) < k - 1:
        raise ValueError(f"question {question.id!r}: only {len(wrong)} distinct wrong values for {k} options")
    values = [question.answer, *rng.sample(wrong, k - 1)]
    rng.shuffle(values)
    letters = "ABCDEFGH"[:k]
    options = {letter: f"{v} {unit}".strip() for letter, v in zip(letters, values)}
    correct = letters[values.index(question.answer)]
    solution = meta.get("solution", "")
    head, sep, _ = solution.rpartition("The answer is")
    keep = ("calculator", "level", "inputs", "decimals", "unit")
    return MedQuestion(
        id=f"{question.id}_mc", question=question.question, options=options, answer=correct,
        task_type="multiple_choice", domain=question.domain, source=question.source,
        metadata={**{key: meta[key] for key in keep if key in meta}, "numeric_answer": question.answer,
                  "solution": f"{head}The answer is {correct}." if sep else solution})


def write_seeds(config: SeedGenConfig) -> Path:
    """Generate and write the seed file atomically; returns its path."""
    return save_questions(config.output, generate_seeds(config))
