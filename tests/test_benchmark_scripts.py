"""The benchmark scripts added for issue 16 run end to end on the tiny model (so they cannot rot
before someone measures with them); their figures are printed by the scripts, never asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from testing_utils import require_tiny_model

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = require_tiny_model


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.chdir(BENCH.parent)  # the scripts read examples/configs/ relative to the repository
    yield
    for name in ("bench_utilization", "bench_invariant", "bench_prm"):
        sys.modules.pop(name, None)


def test_utilization_benchmark_measures_both_arms(benchmarks, monkeypatch):
    import bench_utilization

    import meds3.config
    from meds3.engines import build_engine

    # the README job's rollout on a smaller tree: both arms still search, stream and reuse the prefix cache
    load = meds3.config.load_config
    smaller = ["rollout.search.max_nodes=4", "rollout.search.rollout_budget=2", "rollout.search.min_rollouts=1",
               "rollout.search.max_step_tokens=16", "rollout.search.max_finish_tokens=24",
               "rollout.search.max_rollout_tokens=24"]
    monkeypatch.setattr(meds3.config, "load_config",
                        lambda cls, path, overrides: load(cls, path, [*overrides, *smaller]))

    engine = build_engine("tiny-random-llama", backend="transformers", batch_invariant=True)
    rows = [bench_utilization.measure(engine, "transformers", 1, schedule) for schedule in ("rounds", "async")]
    for row in rows:
        assert row["trees"] == 1 and row["engine_calls"] >= 1 and row["sequences_in_flight"] >= 1
        assert row["search_tokens_per_s"] > 0 and row["engine_tokens_per_s"] > 0 and row["utilization"] > 0
        assert 0 <= row["prompt_tokens_cached_share"] <= 1
    assert rows[0]["_shapes"] == rows[1]["_shapes"]  # batch-invariant: both schedules grow the same tree


def test_invariance_benchmark_counts_changed_targets(benchmarks):
    import bench_invariant

    rows = [bench_invariant.measure("tiny-random-llama", invariant, mixes=1, seed=0) for invariant in (False, True)]
    assert [r["targets"] for r in rows] == [3, 3] and rows[1]["targets_changed"] == 0
    assert all(r["tokens_per_s"] > 0 for r in rows)


def test_prm_benchmark_measures_old_and_new_scorer(benchmarks):
    import bench_prm

    row = bench_prm.measure("tiny-random-llama", questions=2, responses=2, response_tokens=40, repeats=1)
    assert row["questions"] == 2 and row["responses_per_question"] == 2
    assert row["max_abs_score_diff"] <= 1e-5  # the old and new scorer agree
    assert row["tokens_encoded_new"] < row["tokens_encoded_old"]  # the question encoded once per row
    assert set(row["s_per_question"]) == {"old", "new", "forward_padded", "forward_packed"}
    assert all(v > 0 for v in row["s_per_question"].values()) and row["ratio_old_over_new"] > 0
