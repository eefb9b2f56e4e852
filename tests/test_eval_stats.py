"""The bootstrap interval of an accuracy: pinned values, degenerate cases, bad arguments."""

import pytest

from meds3.eval.stats import bootstrap_ci


def test_pinned_intervals():
    assert bootstrap_ci([1] * 27 + [0] * 73) == (0.18, 0.36)  # 27 % of 100 questions
    assert bootstrap_ci([1, 0] * 50) == (0.4, 0.6)
    assert bootstrap_ci([True] * 3) == (1.0, 1.0) and bootstrap_ci([0] * 5) == (0.0, 0.0)
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_interval_is_reproducible_and_narrows_with_questions():
    few, many = [1, 0, 0, 1, 0] * 4, [1, 0, 0, 1, 0] * 80
    assert bootstrap_ci(few) == bootstrap_ci(few)
    lo_f, hi_f = bootstrap_ci(few)
    lo_m, hi_m = bootstrap_ci(many)
    assert lo_f <= lo_m <= 0.4 <= hi_m <= hi_f and hi_m - lo_m < hi_f - lo_f
    assert bootstrap_ci(few, level=0.5)[1] - bootstrap_ci(few, level=0.5)[0] < hi_f - lo_f


@pytest.mark.parametrize("kwargs", [{"level": 1.0}, {"level": 0}, {"resamples": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci([1, 0], **kwargs)
