"""Poison questions (issue 15, item 2): a question its verifier cannot check, or whose text
cannot be written as UTF-8, is refused at load with file:line (or skipped and reported), and
an error raised while searching one question fails only that question's tree."""

from __future__ import annotations

import json

import pytest
from scripted_engine import ScriptedEngine

from meds3.cli import main
from meds3.data import DataError, MedQuestion, load_questions
from meds3.mcts import Forest, SearchConfig
from meds3.rollout import RolloutConfig, TreeStore, run_rollout

GOOD_NUMERIC = {"id": "ok", "question": "BMI?", "answer": "24.2", "task_type": "numeric",
                "metadata": {"tolerance": 0.05}}


def numeric(**kw) -> str:
    record = {**GOOD_NUMERIC, "id": "bad", **kw}
    return json.dumps(record, allow_nan=True)


# JSON texts as an audit wrote them; each is line 2 of the file, after one good question.
POISON = [
    (numeric(answer="abc"), "numeric answer 'abc' is not a number"),
    (numeric(answer=float("nan")), "numeric answer 'nan' is not a number"),
    (numeric(answer="Infinity"), "numeric answer 'Infinity' is not a number"),
    (numeric(answer=float("inf")), "numeric answer 'inf' is not a number"),
    (numeric(answer="1e999"), "is not a finite number"),
    (numeric(metadata={"tolerance": float("nan")}), "tolerance must be >= 0, got nan"),
    (numeric(metadata={"tolerance": float("inf")}), "tolerance must be finite, got inf"),
    (numeric(metadata={"tolerance": "lots"}), "tolerance must be a number, got 'lots'"),
    (numeric(metadata={"range": [0, "Infinity"]}), "must hold finite numbers"),
    (numeric(metadata={"abs_tolerance": True}), "abs_tolerance must be a number, got True"),
    ('{"id": "bad", "question": "Which?\\ud800", "options": {"A": "x", "B": "y"}, "answer": "B"}',
     "lone surrogate"),
    ('{"id": "bad", "question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "B", '
     '"metadata": {"note": "\\udfff"}}', "lone surrogate"),
    ('{"id": "bad", "question": "Yes?", "answer": "perhaps", "task_type": "yes_no"}', "yes, no or maybe"),
]


def write(tmp_path, lines: list[str], name: str = "seed.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("line, fragment", POISON, ids=[f"poison{i}" for i in range(len(POISON))])
def test_poison_question_is_a_data_error_naming_file_and_line(tmp_path, line, fragment):
    path = write(tmp_path, [json.dumps(GOOD_NUMERIC), line])
    with pytest.raises(DataError) as info:
        load_questions(path)
    assert info.value.path == str(path) and info.value.where == "line 2"
    assert fragment in str(info.value) and str(info.value).startswith(f"{path}:line 2: ")


@pytest.mark.parametrize("line, fragment", POISON[:1] + POISON[6:7] + POISON[10:11],
                         ids=["gold", "tolerance", "surrogate"])
def test_poison_question_is_skipped_and_reported(tmp_path, line, fragment):
    path = write(tmp_path, [json.dumps(GOOD_NUMERIC), line])
    qs = load_questions(path, on_error="skip")
    assert [q.id for q in qs] == ["ok"]
    [skipped] = qs.report.skipped
    assert skipped.where == "line 2" and fragment in skipped.reason


def test_surrogate_names_the_field(tmp_path):
    path = write(tmp_path, [POISON[11][0]])
    with pytest.raises(DataError) as info:
        load_questions(path)
    assert info.value.field == "metadata.note"


def test_data_check_reports_poison_questions(tmp_path, capsys):
    path = write(tmp_path, [json.dumps(GOOD_NUMERIC)] + [line for line, _ in POISON[:3]])
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "loaded 1, skipped 3" in out and "line 3:" in out and "numeric answer 'nan'" in out


QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(4)]


def raising_for(question_id: str):
    """A verifier that raises for one question only, as a buggy or poisoned check would."""
    from meds3.verify import verify

    def verifier(text, question):
        if question.id == question_id:
            raise ValueError(f"poisoned gold answer of {question_id}")
        return verify(text, question)

    return verifier


def test_verifier_error_fails_only_that_tree_and_the_shard_is_written(tmp_path):
    forest = Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=3, verifier=raising_for("q1"))
    store = TreeStore(tmp_path / "trees", flush_every=10)
    for tree in forest.run(QS):
        store.add(tree)
    store.close()
    stored = {t.question.id: t for t in TreeStore(tmp_path / "trees").iter_trees()}
    assert sorted(stored) == ["q0", "q1", "q2", "q3"]
    assert stored["q1"].status == "failed"
    assert "ValueError" in stored["q1"].error and "poisoned gold answer of q1" in stored["q1"].error
    assert all(stored[q].status == "complete" and stored[q].stop_reason for q in ("q0", "q2", "q3"))
    assert forest.stats.trees_failed == 1 and forest.stats.trees_done == 4


def test_a_failing_tree_does_not_change_the_others():
    clean = {t.question.id: t.to_dict() for t in Forest(ScriptedEngine(), SearchConfig(max_nodes=10),
                                                        live_trees=3).run(QS)}
    poisoned = {t.question.id: t.to_dict() for t in Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=3,
                                                           verifier=raising_for("q2")).run(QS)}
    assert {k: v for k, v in poisoned.items() if k != "q2"} == {k: v for k, v in clean.items() if k != "q2"}


class FailingValueModel:
    """A PRM stub that scores every path 0.5 but raises for paths of one question."""

    def __init__(self, question_id: str):
        self.question_id = question_id

    def score_batch(self, items):
        if any(q.id == self.question_id for q, _ in items):
            raise RuntimeError(f"PRM cannot score {self.question_id}")
        return [[[0.5] * len(paths[0])] for _, paths in items]


def test_prm_error_on_one_question_fails_only_its_tree():
    forest = Forest(ScriptedEngine(), SearchConfig(max_nodes=10, prm_prior_weight=0.5), live_trees=4,
                    value_model=FailingValueModel("q3"))
    trees = {t.question.id: t for t in forest.run(QS)}
    assert trees["q3"].status == "failed" and "PRM cannot score q3" in trees["q3"].error
    assert all(trees[q].status == "complete" for q in ("q0", "q1", "q2"))


def test_prompt_error_on_one_question_fails_only_its_tree():
    forest = Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=2)
    render = forest.render

    def broken_render(question, steps):
        if question.id == "q0":
            raise KeyError("template field")
        return render(question, steps)

    forest.render = broken_render
    trees = {t.question.id: t for t in forest.run(QS)}
    assert trees["q0"].status == "failed" and "KeyError" in trees["q0"].error
    assert [trees[q].status for q in ("q1", "q2", "q3")] == ["complete"] * 3


def test_rollout_job_stores_the_failed_tree_and_finishes(tmp_path, monkeypatch):
    import meds3.verify

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in QS), encoding="utf-8")
    monkeypatch.setattr(meds3.verify, "verify", raising_for("q0"))  # the search's default verifier
    config = RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "run"), live_trees=2, flush_every=2,
                           search=SearchConfig(max_nodes=8))
    summary = run_rollout(config, engine=ScriptedEngine(), progress=False)
    stored = {t.question.id: t for t in TreeStore(tmp_path / "run" / "trees").iter_trees()}
    assert sorted(stored) == ["q0", "q1", "q2", "q3"]
    assert stored["q0"].status == "failed" and "poisoned gold answer of q0" in stored["q0"].error
    assert summary["trees"] == 4 and summary["failed"] == 1
