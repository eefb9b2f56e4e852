"""Issue 15 item 5: a resume checks that the settings which shape the outputs match; a mismatch
is refused naming the keys, or with force the old outputs are moved aside and the stage starts
afresh; evolve refuses a seed split that moves searched questions into the held-out set."""

from __future__ import annotations

import json

import pytest
from scripted_engine import ScriptedEngine

from meds3.config import ConfigError
from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.eval import EvalConfig
from meds3.eval.runner import _check_resume
from meds3.evolve.loop import check_split
from meds3.evolve.stages import run_stage
from meds3.mcts import SearchConfig
from meds3.rollout import RolloutConfig, TreeStore, run_rollout

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B",
                  task_type="multiple_choice") for i in range(8)]


def job(tmp_path, **kw) -> RolloutConfig:
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    kw = {"search": SearchConfig(max_nodes=8), "live_trees": 2, **kw}
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), flush_every=1, **kw)


def test_rollout_resume_with_other_search_settings_is_refused_naming_the_key(tmp_path):
    run_rollout(job(tmp_path, limit=3), engine=ScriptedEngine(), progress=False)
    engine = ScriptedEngine()
    with pytest.raises(ConfigError, match=r"other settings \(search\): search\.max_nodes: was 8, now 12.*--force"):
        run_rollout(job(tmp_path, limit=3, search=SearchConfig(max_nodes=12)), engine=engine, progress=False)
    with pytest.raises(ConfigError, match=r"\(model\)"):
        run_rollout(job(tmp_path, limit=3, model="tiny-random-llama"), engine=engine, progress=False)
    assert engine.calls == []  # refused before any search


def test_rollout_force_moves_old_trees_aside_and_starts_afresh(tmp_path):
    run_rollout(job(tmp_path, limit=3), engine=ScriptedEngine(), progress=False)
    summary = run_rollout(job(tmp_path, limit=3, search=SearchConfig(max_nodes=12)), engine=ScriptedEngine(),
                          progress=False, force=True)
    assert summary["trees"] == 3
    out = tmp_path / "out"
    aside = list(out.glob("superseded-*"))
    assert len(aside) == 1 and len(list(TreeStore(aside[0] / "trees").iter_trees())) == 3  # kept, not deleted
    assert json.loads((out / "fingerprint.json").read_text())["search"]["max_nodes"] == 12


def test_more_questions_and_speed_options_are_a_legitimate_resume(tmp_path):
    run_rollout(job(tmp_path, limit=3), engine=ScriptedEngine(), progress=False)
    summary = run_rollout(job(tmp_path, limit=5, live_trees=4, engine={"max_batch_size": 8}), engine=ScriptedEngine(),
                          progress=False)
    assert summary["trees"] == 5
    with pytest.raises(ConfigError, match=r"engine\.dtype"):
        run_rollout(job(tmp_path, limit=5, engine={"dtype": "float16"}), engine=ScriptedEngine(), progress=False)


def test_eval_resume_key_covers_backend_and_engine_options(tmp_path):
    base = dict(datasets=["x.jsonl"], output_dir=str(tmp_path))
    _check_resume(tmp_path, EvalConfig(**base))
    _check_resume(tmp_path, EvalConfig(**base, engine={"max_batch_size": 8}))  # speed only: resumes
    with pytest.raises(ConfigError, match=r"\(backend, engine\)"):
        _check_resume(tmp_path, EvalConfig(**base, backend="vllm", engine={"dtype": "bfloat16"}))
    with pytest.raises(ConfigError, match=r"engine\.seed"):
        _check_resume(tmp_path, EvalConfig(**base, engine={"seed": 3}))
    (tmp_path / "responses").mkdir()
    (tmp_path / "responses" / "x.greedy.jsonl").write_text("{}\n")
    assert _check_resume(tmp_path, EvalConfig(**base, engine={"seed": 3}), force=True)
    assert not (tmp_path / "responses").exists() and list(tmp_path.glob("superseded-*/responses/x.greedy.jsonl"))


def test_a_finished_stage_with_other_settings_is_refused_or_forced(tmp_path):
    calls = []

    def work():
        calls.append(1)
        (tmp_path / "s" / "out.txt").write_text(str(len(calls)))
        return {"n": len(calls)}

    run_stage("iter1/policy", tmp_path / "s", work, fingerprint={"config": {"learning_rate": 1e-4}})
    assert run_stage("iter1/policy", tmp_path / "s", work, fingerprint={"config": {"learning_rate": 1e-4}}).skipped
    with pytest.raises(ConfigError, match=r"iter1/policy.*config\.learning_rate: was 0\.0001, now 0\.0002"):
        run_stage("iter1/policy", tmp_path / "s", work, fingerprint={"config": {"learning_rate": 2e-4}})
    result = run_stage("iter1/policy", tmp_path / "s", work, fingerprint={"config": {"learning_rate": 2e-4}},
                       force=True)
    assert not result.skipped and result.summary == {"n": 2}
    assert [p.read_text() for p in (tmp_path / "s").glob("superseded-*/out.txt")] == ["1"]


def test_evolve_refuses_a_split_that_puts_searched_questions_in_the_held_out_set(tmp_path):
    check_split(tmp_path, QS[:6], QS[6:])
    check_split(tmp_path, QS[:6], QS[6:])  # same split: resumes
    (tmp_path / "iter1").mkdir()
    with pytest.raises(ConfigError, match=r"held_out.*test contamination\), e\.g\. q4, q5"):
        check_split(tmp_path, QS[:4], QS[4:])  # held_out 2 -> 4
    with pytest.raises(ConfigError, match=r"\(pool changed\)"):
        check_split(tmp_path, QS[5::-1], QS[6:])  # seed order changed
    check_split(tmp_path, QS[:4], QS[4:], force=True)
    assert list(tmp_path.glob("superseded-*/iter1"))
    assert json.loads((tmp_path / "split.json").read_text())["held_out"] == ["q4", "q5", "q6", "q7"]


@pytest.mark.parametrize("command", ["rollout", "eval", "evolve"])
def test_force_flag_on_the_commands(command):
    from meds3.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([command, "--force"]).force is True
    assert parser.parse_args([command]).force is False


def test_a_config_field_added_by_a_later_version_does_not_block_a_resume():
    from meds3.resume import mismatch_message

    saved = {"search": {"max_nodes": 8}, "engine": {}}
    defaults = {"search": {"max_nodes": 60, "new_field": 0}, "engine": {}}
    # a field added to SearchConfig since, at its default: not a difference
    assert mismatch_message("x", "trees", saved, {"search": {"max_nodes": 8, "new_field": 0}, "engine": {}},
                            defaults) is None
    # the same field at another value: the saved trees were made with the default, so it is
    assert "search.new_field" in mismatch_message("x", "trees", saved, {"search": {"max_nodes": 8, "new_field": 1},
                                                                        "engine": {}}, defaults)
    # a whole setting added to the key later (top level) is not a difference
    assert mismatch_message("x", "trees", saved, {**saved, "backend": "vllm"}, defaults) is None
    # a real change still is; so is an engine option set now that was left at its default then
    assert "search.max_nodes" in mismatch_message("x", "trees", saved, {"search": {"max_nodes": 9}, "engine": {}})
    assert "engine.dtype" in mismatch_message("x", "trees", saved, {"search": {"max_nodes": 8},
                                                                    "engine": {"dtype": "float16"}})
    # a field the saved settings have but the current ones lack is a difference
    assert "search.old" in mismatch_message("x", "trees", {"search": {"old": 1}}, {"search": {}})
