"""Confidence intervals for accuracies: the percentile bootstrap over questions."""

from __future__ import annotations

from typing import Sequence

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed, so a table is the same every time it is recomputed


def bootstrap_ci(outcomes: Sequence[bool | int | float], level: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-question outcomes (1 correct, 0 not).

    Args:
        outcomes: one value per question.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        resamples: bootstrap resamples of the questions, with replacement.
        seed: numpy seed of the resampling.

    Returns:
        ``(low, high)``; ``(0.0, 0.0)`` for no questions.

    Raises:
        ValueError: ``level`` outside (0, 1) or ``resamples`` < 1.
    """
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    values = np.asarray(outcomes, dtype=np.float64)
    if values.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)
