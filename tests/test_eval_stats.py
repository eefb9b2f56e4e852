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


def test_an_evaluation_saved_before_few_shot_existed_still_resumes(tmp_path):
    import json

    from meds3.config import ConfigError
    from meds3.data.prompts import PromptConfig
    from meds3.eval import EvalConfig
    from meds3.eval.runner import _check_resume

    config = EvalConfig(datasets=["x.jsonl"], output_dir=str(tmp_path))
    old = config.generation_key()
    old["prompt"] = {k: v for k, v in old["prompt"].items() if k != "few_shot"}  # as an older version saved it
    (tmp_path / "generation.json").write_text(json.dumps(old))
    _check_resume(tmp_path, config)  # same settings: resumes
    with pytest.raises(ConfigError, match=r"other settings \(prompt\)"):
        _check_resume(tmp_path, EvalConfig(datasets=["x.jsonl"], output_dir=str(tmp_path),
                                           prompt=PromptConfig(few_shot=1)))
