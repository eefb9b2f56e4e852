"""A PRM that fails (issue: long jobs that survive faults): a lost CUDA context in the value
model stops the forest with ``EngineFailure`` (on Ray: the actor is replaced) instead of
turning every later tree into a failed tree; an ordinary error fails only its tree."""

from __future__ import annotations

import pytest
from scripted_engine import ScriptedEngine

from meds3.data.question import MedQuestion
from meds3.mcts import SearchConfig
from meds3.mcts.forest import EngineFailure, Forest

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "x", "B": "y"}, answer="A") for i in range(3)]


class BrokenPRM:
    def __init__(self, message: str, bad: str | None = None):
        self.message, self.bad = message, bad

    def score_batch(self, items):
        if self.bad is None or any(q.id == self.bad for q, _ in items):
            raise RuntimeError(self.message)
        return [[[0.5] * len(t) for t in trajs] for _, trajs in items]


def test_a_prm_that_lost_its_gpu_stops_the_forest():
    forest = Forest(ScriptedEngine(), SearchConfig(prm_prior_weight=0.5, max_nodes=8), live_trees=3,
                    value_model=BrokenPRM("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(EngineFailure, match="PRM failed for good"):
        list(forest.run(QS))


def test_an_ordinary_prm_error_fails_only_its_tree():
    forest = Forest(ScriptedEngine(), SearchConfig(prm_prior_weight=0.5, max_nodes=8), live_trees=3,
                    value_model=BrokenPRM("shape mismatch", bad="q1"))
    trees = {t.question.id: t for t in forest.run(QS)}
    assert trees["q1"].status == "failed" and "shape mismatch" in trees["q1"].error
    assert trees["q0"].status == trees["q2"].status == "complete"


def scored_once(tmp_path):
    """A mini benchmark evaluated once with p-vs and a PRM folder: (config, its PRM folder, the
    scorer, which has scored the 4 questions once)."""
    from test_eval import TableEngine, TableScorer, write_bench

    from meds3.eval import EvalConfig, run_eval

    bench = write_bench(tmp_path / "mini.jsonl")
    prm = tmp_path / "prm"
    prm.mkdir()
    (prm / "adapter_model.safetensors").write_bytes(b"weights v1")
    config = EvalConfig(datasets=[str(bench)], n=4, selectors=["p-vs"], greedy=False, prm=str(prm),
                        output_dir=str(tmp_path / "out"))
    scorer = TableScorer()
    run_eval(config, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 4
    return config, prm, scorer


def test_saved_step_scores_are_redone_when_the_prm_changed(tmp_path):
    from test_eval import TableEngine

    from meds3.eval import read_responses, run_eval

    config, prm, scorer = scored_once(tmp_path)
    run_eval(config, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 4  # the same PRM: saved scores kept
    (prm / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained in place
    run_eval(config, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 8  # every response scored again with the new PRM
    saved = read_responses(tmp_path / "out" / "responses" / "mini.n4.jsonl")
    assert all(r.step_scores is not None for rs in saved.values() for r in rs)


def test_saved_step_scores_are_redone_when_the_prm_precision_changed(tmp_path):
    import dataclasses
    import json

    from test_eval import TableEngine

    from meds3.eval import run_eval

    config, _, scorer = scored_once(tmp_path)
    # auto writes the key of files made before the option existed, so those stay valid
    assert set(json.loads((tmp_path / "out" / "scores.json").read_text())) == {"prm_sha256"}
    bf16 = dataclasses.replace(config, prm_precision="bfloat16")
    run_eval(bf16, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 8  # scores of another precision are not mixed with the saved ones
    run_eval(bf16, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 8
    run_eval(config, engine=TableEngine(), scorer=scorer, progress=False)
    assert scorer.calls == 12
