"""Stage bookkeeping and seed splitting of the evolution loop (no model)."""

from __future__ import annotations

import json

import pytest

from meds3.evolve.stages import read_manifest, run_stage, write_manifest


def test_run_stage_runs_once_then_skips(tmp_path):
    calls = []

    def work():
        calls.append(1)
        return {"trees": 3}

    first = run_stage("iter1/rollout", tmp_path / "s", work, inputs={"questions": 3})
    second = run_stage("iter1/rollout", tmp_path / "s", work)
    assert calls == [1]
    assert (first.skipped, second.skipped) == (False, True)
    assert second.summary == {"trees": 3}
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["inputs"] == {"questions": 3}


def test_a_stage_that_raises_leaves_no_manifest_and_reruns(tmp_path):
    def broken():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage("iter1/policy", tmp_path / "p", broken)
    assert read_manifest(tmp_path / "p") is None
    assert run_stage("iter1/policy", tmp_path / "p", lambda: {"ok": True}).skipped is False


def test_unreadable_manifest_is_a_data_error(tmp_path):
    from meds3.data.errors import DataError

    (tmp_path / "manifest.json").write_text("{truncated", encoding="utf-8")
    with pytest.raises(DataError, match=r"manifest.json:line 1: not JSON"):  # written atomically: damaged from outside
        read_manifest(tmp_path)
    write_manifest(tmp_path, {"status": "done"})
    assert read_manifest(tmp_path) == {"status": "done"}
