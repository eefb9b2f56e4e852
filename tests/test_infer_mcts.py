"""PRM-guided MCTS at test time: values by hand on a scripted tree, independence from the gold
answer, the answer chosen, the evaluation strategy with resume, and a real tiny model."""

from __future__ import annotations

import json

import pytest
from scripted_engine import ScriptedEngine
from test_mcts_actions import RecordingValueModel

from meds3.data import MedQuestion
from meds3.data.loaders import save_questions
from meds3.data.prompts import render_prompt
from meds3.engines.types import Sample
from meds3.eval import EvalConfig, run_eval
from meds3.infer import inference_search_config, prm_guided_mcts
from meds3.infer.mcts import best_leaf_answer
from meds3.mcts.config import SearchConfig
from meds3.mcts.search import TreeSearch

OPTIONS = {"A": "x", "B": "y", "C": "z"}


def s(text, reason="stop"):
    return Sample(text=text, token_ids=[1] * 3, finish_reason=reason)


def kinds(reqs):
    return [(r.node_id, r.kind, r.n) for r in reqs]


def scripted(gold):
    q = MedQuestion(id="q1", question="Which?", options=OPTIONS, answer=gold)
    search = TreeSearch(q, inference_search_config(max_nodes=6), lambda qq, st: render_prompt(qq, None, st))
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    assert kinds(search.requests()) == [(1, "prm", 1), (2, "prm", 1), (3, "prm", 1)]  # no rollouts
    search.apply([[0.2], [0.9], [0.5]])
    assert kinds(search.requests()) == [(2, "finish", 1)]  # PRM value 0.9 >= bear_ratio
    search.apply([[s("The answer is C.", "eos")]])
    assert kinds(search.requests()) == [(4, "prm", 1)]  # the Finish is valued by the PRM too
    search.apply([[0.8]])
    search.requests()
    return search


def test_values_are_prm_scores_and_the_gold_answer_never_steers():
    right, wrong = scripted("C"), scripted("B")
    # root: 0.1 -> 0.325 -> 0.4291667 -> (0.4291667 + (0.2 + 2 * 0.85 + 0.5) / 4) / 2; node 2: (0.9 + 0.8) / 2.
    expected = [(4, 0.51458333), (1, 0.2), (2, 0.85), (1, 0.5), (1, 0.8)]
    for search in (right, wrong):
        assert [(n.visits, round(n.value, 8)) for n in search.nodes] == expected
    assert (right.nodes[4].verdict, wrong.nodes[4].verdict) == (True, False)  # recorded, never used
    assert [r.kind for r in right.requests()] == [r.kind for r in wrong.requests()]
    answer = best_leaf_answer(right.tree)
    assert (answer.answer, answer.correct, answer.value) == ("C", True, 0.8)


def test_the_best_valued_leaf_answers():
    tree = scripted("C").tree
    tree.nodes[4].value = 0.3
    extra = tree.nodes[4].__class__(id=5, parent=3, depth=2, kind="finish", step="The answer is A.", visits=1,
                                    value=0.6, verdict=False, answer="A")
    tree.nodes.append(extra)
    tree.nodes[3].children.append(5)
    assert best_leaf_answer(tree).answer == "A"
    tree.nodes[5].answer = None  # a leaf without an answer never answers
    assert best_leaf_answer(tree).answer == "C"


def test_prm_guided_mcts_answers_every_question():
    questions = [MedQuestion(id=f"q{i}", question=f"Which {i}?", options=OPTIONS, answer="B") for i in range(3)]
    value_model = RecordingValueModel()
    answers = prm_guided_mcts(questions, ScriptedEngine(), value_model, inference_search_config(max_nodes=8))
    assert [a.question_id for a in answers] == ["q0", "q1", "q2"] and value_model.calls
    for a in answers:
        assert a.answer in {"B", "C"} and a.correct == (a.answer == "B") and a.tree.status == "complete"
    with pytest.raises(ValueError, match="needs finish_value 'prm'"):
        prm_guided_mcts(questions, ScriptedEngine(), value_model, SearchConfig())  # would read the gold answer
    with pytest.raises(ValueError, match="needs prm_prior_weight 1"):
        SearchConfig(finish_value="prm")
    assert inference_search_config(prm_prior_weight=0.5).prm_prior_weight == 1.0


def test_eval_strategy_with_resume(tmp_path):
    data = tmp_path / "mini.jsonl"
    save_questions(data, [MedQuestion(id=f"m{i}", question=f"Which {i}?", options=OPTIONS, answer="B")
                          for i in range(4)])
    config = EvalConfig(datasets=[str(data)], n=2, selectors=["majority"], greedy=False, mcts=True,
                        mcts_search=inference_search_config(max_nodes=6), output_dir=str(tmp_path / "eval"))
    engine = ScriptedEngine()
    summary = run_eval(config, engine=engine, scorer=RecordingValueModel(), progress=False)
    [row] = [r for r in summary["results"] if r["selector"] == "prm-mcts"]
    saved = [json.loads(line) for line in (tmp_path / "eval" / "responses" / "mini.prm-mcts.jsonl").read_text()
             .splitlines()]
    assert [r["question_id"] for r in saved] == ["m0", "m1", "m2", "m3"]
    assert row["questions"] == 4 and row["correct"] == sum(bool(r["correct"]) for r in saved)
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"] and row["n"] == 6
    calls = len(engine.calls)
    again = run_eval(config, engine=engine, scorer=RecordingValueModel(), progress=False)
    assert len(engine.calls) == calls  # resumed: nothing searched or sampled again
    assert [r for r in again["results"] if r["selector"] == "prm-mcts"] == [row]
    with pytest.raises(Exception, match="other settings"):
        run_eval(EvalConfig(**{**config.__dict__, "mcts_search": inference_search_config(max_nodes=7)}),
                 engine=engine, scorer=RecordingValueModel(), progress=False)
    # --force moves only the searches aside (the sampled responses stay) and searches afresh
    changed = EvalConfig(**{**config.__dict__, "mcts_search": inference_search_config(max_nodes=7)})
    forced = run_eval(changed, engine=engine, scorer=RecordingValueModel(), progress=False, force=True)
    [aside] = list((tmp_path / "eval").glob("superseded-mcts-*"))
    assert sorted(p.name for p in aside.iterdir()) == ["mcts.json", "mini.prm-mcts.jsonl"]
    assert (tmp_path / "eval" / "responses" / "mini.n2.jsonl").is_file()
    [row7] = [r for r in forced["results"] if r["selector"] == "prm-mcts"]
    assert row7["questions"] == 4 and row7["n"] == 7


def test_prm_guided_mcts_on_tiny_random_llama():
    from test_mcts_integration import seed_questions

    from meds3.engines import build_engine

    engine = build_engine("tiny-random-llama")
    config = inference_search_config(max_nodes=6, max_step_tokens=12, max_finish_tokens=16, count_truncated=True)
    answers = prm_guided_mcts(seed_questions(2), engine, RecordingValueModel(), config, live_trees=2)
    assert len(answers) == 2
    for a in answers:
        assert a.tree.status == "complete" and a.tokens > 0
        assert all(n.prm_value is not None for n in a.tree.nodes[1:] if n.visits and not n.chained)
