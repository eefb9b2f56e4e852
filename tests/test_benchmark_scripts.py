"""The benchmark scripts added for issue 16 run end to end on the tiny model (so they cannot rot
before someone measures with them); their figures are printed by the scripts, never asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    from meds3.engines import ModelResolutionError, resolve_model

    try:
        resolve_model("tiny-random-llama")
    except ModelResolutionError as exc:
        pytest.skip(str(exc))
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.chdir(BENCH.parent)  # the scripts read examples/configs/ relative to the repository
    yield
    for name in ("bench_utilization", "bench_invariant"):
        sys.modules.pop(name, None)


def test_utilization_benchmark_measures_both_arms(benchmarks):
    import bench_utilization

    row = bench_utilization.measure("transformers", "tiny-random-llama", questions=1)
    assert row["trees"] == 1 and row["engine_calls"] >= 1 and row["sequences_per_call"] >= 1
    assert row["search_tokens_per_s"] > 0 and row["engine_tokens_per_s"] > 0 and row["utilization"] > 0
    assert 0 <= row["prompt_tokens_cached_share"] <= 1


def test_invariance_benchmark_counts_changed_targets(benchmarks):
    import bench_invariant

    rows = [bench_invariant.measure("tiny-random-llama", invariant, mixes=1, seed=0) for invariant in (False, True)]
    assert [r["targets"] for r in rows] == [3, 3] and rows[1]["targets_changed"] == 0
    assert all(r["tokens_per_s"] > 0 for r in rows)
