"""The rest of the MedS3 search, by hand on scripted trees: per-phase sampling, the direct-answer
simulation prompt and few-shot examples, model-chosen actions (Think), Reflect, and the PRM
prior; then all of them together on a real tiny model."""

import pytest
from scripted_engine import ScriptedEngine
from search_helpers import RIGHT, WRONG, Q, kinds, render, rollouts, s

from meds3.config import ConfigError, from_dict
from meds3.data import MedQuestion
from meds3.data.prompts import PromptConfig, render_user_message
from meds3.data.search_prompts import (
    parse_action,
    render_simulation_prompt,
    render_think_prompt,
)
from meds3.mcts import Forest
from meds3.mcts.config import SearchConfig
from meds3.mcts.search import TreeSearch
from meds3.mcts.trajectories import leaf_trajectory


def grown(config, values=(7, 2, 9)):
    """Root -> three Reason steps with rollouts ``values``/10; returns the search with its next
    requests pending."""
    search = TreeSearch(Q, config, render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    search.requests()
    search.apply([rollouts(v, 10) for v in values])
    return search


# ---------------------------------------------------------------- sampling and prompts

def test_each_phase_samples_with_its_own_temperature():
    config = SearchConfig(temperature=0.8, top_p=0.9, expansion_temperature=1.0, expansion_top_p=0.95,
                          rollout_temperature=0.6)
    search = TreeSearch(Q, config, render)
    [reason] = search.requests()
    assert (reason.kind, reason.temperature, reason.top_p) == ("reason", 1.0, 0.95)
    search.apply([[s("A1"), s("A2"), s("A3")]])
    roll = search.requests()
    assert {(r.kind, r.temperature, r.top_p) for r in roll} == {("rollout", 0.6, 0.9)}  # top_p falls back
    plain = TreeSearch(Q, SearchConfig(temperature=0.7, top_p=0.8), render).requests()[0]
    assert (plain.temperature, plain.top_p) == (0.7, 0.8)
    with pytest.raises(ValueError, match="rollout_top_p"):
        SearchConfig(rollout_top_p=1.5)


def test_later_iterations_override_search_and_prompt():
    from meds3.evolve import EvolveConfig

    config = from_dict(EvolveConfig, {
        "rollout": {"search": {"rollout_temperature": 0.6, "simulation": "direct", "prm_prior_weight": 0.5},
                    "prompt": {"few_shot": 1}},
        "later_search": {"rollout_temperature": 1.0, "simulation": "continue"}, "later_prompt": {"few_shot": 0}})
    first, first_prompt = config.search_for(1)
    later, later_prompt = config.search_for(3)
    assert (first.rollout_temperature, first.simulation, first_prompt.few_shot) == (0.6, "direct", 1)
    assert first.prm_prior_weight == 0.0  # no PRM exists before iteration 1's
    assert (later.rollout_temperature, later.simulation, later_prompt.few_shot, later.prm_prior_weight) == (
        1.0, "continue", 0, 0.5)
    with pytest.raises(ConfigError, match="unknown key 'temperatur'"):
        from_dict(EvolveConfig, {"later_search": {"temperatur": 1.0}})


def test_direct_simulation_prompt_for_rollouts():
    search = TreeSearch(Q, SearchConfig(simulation="direct"), render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    roll = search.requests()
    assert roll[0].prompt == render_simulation_prompt(Q, None, ["A1"])
    assert "Reasoning Steps:\nStep 0: Let's break down this problem step by step.\n\nStep 1: A1\n\n" in roll[0].prompt
    assert "generate the final answer" in roll[0].prompt and roll[0].prompt.endswith("Assistant: ")
    assert search.requests()[0].stop == []  # the model answers afresh, to EOS


def test_few_shot_examples_precede_the_problem():
    text = render_user_message(Q, PromptConfig(few_shot=1))
    assert text.startswith("Reasoning Example:\nProblem: A 30-year-old man weighs 81 kg")
    assert "\n\nProblem: Which?\n\nA. x" in text and text.count("Reasoning Example:") == 1
    assert "Which nerve" not in render_user_message(Q) and not render_user_message(Q).startswith("Reasoning")
    with pytest.raises(ValueError, match="few_shot must be in"):
        PromptConfig(few_shot=9)


# ---------------------------------------------------------------- Think: model-chosen actions

@pytest.mark.parametrize("text, action", [("Finish.", "finish"), (" reason", "reason"), ("REASON.", "reason"),
                                          ("Finishing it", "finish"), ("Reflect", None), ("", None),
                                          ("I would reason, then finish", "reason")])
def test_parse_action(text, action):
    assert parse_action(text) == action


def test_the_policy_chooses_each_childs_action():
    config = SearchConfig(action_policy="model")
    search = TreeSearch(Q, config, render)
    assert kinds(search.requests()) == [(0, "reason", 3)]  # the root always reasons (MedS3)
    search.apply([[s("A1"), s("A2"), s("A3")]])
    search.requests()
    search.apply([rollouts(7, 10), rollouts(2, 10), rollouts(5, 10)])
    [think] = search.requests()  # node 1 (0.7) wins UCT; below bear_ratio: the policy picks
    assert (think.node_id, think.kind, think.n, think.max_new_tokens) == (1, "think", 3, 4)
    assert think.prompt == render_think_prompt(Q, None, ["A1"]) and think.prompt.endswith("The action is ")
    search.apply([[s("Finish."), s("Reason"), s("no idea")]])  # "no idea" names neither: Reason
    assert kinds(search.requests()) == [(1, "reason", 2), (1, "finish", 1)]
    search.apply([[s("B1"), s("B2")], [s(RIGHT, "eos")]])
    assert [(n.id, n.action) for n in search.nodes[4:]] == [(4, "reason"), (5, "reason"), (6, "finish")]


def test_all_finish_choice_gives_one_request():
    search = grown(SearchConfig(action_policy="model"), values=(7, 2, 5))
    search.requests()
    search.apply([[s("finish")] * 3])
    assert kinds(search.requests()) == [(1, "finish", 3)]


# ---------------------------------------------------------------- Reflect

def reflect_scenario(config=None):
    """C = 0.1 so values decide selection. Rollouts 0, 0, 9/10: node 3 expands with one Finish,
    which is wrong; root: 0 -> 0 -> 0.15 -> (0.15 + 0.9 / 4) / 2 = 0.1875; node 3: 0.45."""
    config = config or SearchConfig(exploration_constant=0.1, refine_limit=1)
    search = grown(config, values=(0, 0, 9))
    assert kinds(search.requests()) == [(3, "finish", 1)]
    search.apply([[s(WRONG, "eos")]])
    return search


def test_a_wrong_finish_gets_a_reflect_child():
    search = reflect_scenario()
    [req] = search.requests()
    n = search.nodes
    assert (n[4].verdict, n[4].completed) == (False, False)  # open for Reflect
    assert (n[0].value, n[3].value, n[4].value) == (pytest.approx(0.1875), pytest.approx(0.45), 0.0)
    # Node 3 (0.45 + 0.1 sqrt(ln 4 / 2)) beats node 1; node 4 is its only child: Reflect.
    assert (req.node_id, req.kind, req.n) == (4, "reflect", 1)
    assert req.prompt == render(Q, ["A3", WRONG]) + "But wait, "
    assert req.prompt.endswith("Step 2: The answer is C.\n\nStep 3: But wait, ")
    assert req.stop[0] == "Step 4:"
    search.apply([[s("the dose is wrong; recompute.")]])
    assert (n[4].kind, n[4].terminal, n[4].verdict) == ("reason", False, False)  # re-typed, no longer a leaf
    assert (n[5].step, n[5].kind, n[5].action, n[5].refine_count) == (
        "But wait, the dose is wrong; recompute.", "reason", "reflect", 1)
    assert kinds(search.requests()) == [(5, "rollout", 5)]  # depth 3: max(20 // 4, 5)
    search.apply([rollouts(5, 5)])
    [fin] = search.requests()
    # Back-up of node 5 (1.0): node 4 (0 + 1) / 2 = 0.5, node 3 (0.45 + 0.5) / 2 = 0.475,
    # root (0.1875 + (0 + 0 + 3 * 0.475) / 5) / 2 = 0.23625.
    assert [(x.visits, round(x.value, 8)) for x in (n[0], n[3], n[4], n[5])] == [
        (5, 0.23625), (3, 0.475), (2, 0.5), (1, 1.0)]
    assert (fin.node_id, fin.kind) == (5, "finish")  # rollout value 1.0 >= bear_ratio
    search.apply([[s(RIGHT, "eos")]])
    search.requests()
    assert n[6].verdict is True and n[6].refine_count == 1
    assert [x.id for x in search.tree.finish_leaves()] == [6]  # the wrong Finish is no longer a leaf
    traj = leaf_trajectory(search.tree, 6)
    assert traj.steps[1:] == ["A3", WRONG, "But wait, the dose is wrong; recompute.", RIGHT]


def test_reflect_is_limited_per_path():
    search = reflect_scenario()
    search.requests()
    search.apply([[s("But the answer is A.", "eos")]])  # a Reflect step that answers (wrong) at once
    n = search.nodes
    assert (n[5].kind, n[5].verdict, n[5].refine_count, n[5].completed) == ("finish", False, 1, True)
    search.requests()
    assert n[4].completed  # its only child is done: no second Reflect below refine_limit 1


def test_no_reflect_by_default_or_on_correct_finishes():
    search = reflect_scenario(SearchConfig(exploration_constant=0.1))
    search.requests()
    assert search.nodes[4].completed  # refine_limit 0
    search = grown(SearchConfig(exploration_constant=0.1, refine_limit=1), values=(0, 0, 9))
    search.requests()
    search.apply([[s(RIGHT, "eos")]])
    search.requests()
    assert search.nodes[4].completed  # a correct Finish is never reflected on


# ---------------------------------------------------------------- PRM prior

def test_prm_prior_blends_with_rollouts():
    search = TreeSearch(Q, SearchConfig(prm_prior_weight=0.5), render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    reqs = search.requests()
    assert kinds(reqs) == [(1, "rollout", 10), (2, "rollout", 10), (3, "rollout", 10),
                           (1, "prm", 1), (2, "prm", 1), (3, "prm", 1)]
    assert reqs[3].steps == ["Let's break down this problem step by step.", "A1"]
    search.apply([rollouts(7, 10), rollouts(2, 10), rollouts(9, 10), [0.3], [0.6], [0.1]])
    search.requests()
    n = search.nodes
    assert [(x.rollout_value, x.prm_value, round(x.value, 8)) for x in n[1:4]] == [
        (0.7, 0.3, 0.5), (0.2, 0.6, 0.4), (0.9, 0.1, 0.5)]


def test_prm_prior_weight_one_replaces_rollouts():
    search = TreeSearch(Q, SearchConfig(prm_prior_weight=1.0), render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    assert kinds(search.requests()) == [(1, "prm", 1), (2, "prm", 1), (3, "prm", 1)]
    search.apply([[0.3], [0.95], [0.1]])
    reqs = search.requests()
    assert [round(x.value, 8) for x in search.nodes[1:4]] == [0.3, 0.95, 0.1]
    assert kinds(reqs) == [(2, "finish", 1)]  # node 2: PRM value 0.95 >= bear_ratio


class RecordingValueModel:
    """Scores a path by its number of steps (a stand-in for the PRM), recording each call."""

    def __init__(self):
        self.calls = []

    def score_batch(self, items):
        self.calls.append(len(items))
        return [[[0.1 * (k + 1) for k in range(len(t))] for t in trajs] for _, trajs in items]


def test_forest_sends_prm_requests_to_the_value_model_only():
    engine, value_model = ScriptedEngine(), RecordingValueModel()
    config = SearchConfig(prm_prior_weight=0.5, max_nodes=8)
    trees = list(Forest(engine, config, live_trees=2, value_model=value_model).run(
        [Q, MedQuestion(id="q2", question="Other?", options={"A": "x", "B": "y"}, answer="A")]))
    assert all(t.status == "complete" for t in trees) and value_model.calls
    for tree in trees:
        for node in tree.nodes[1:]:
            if node.kind == "reason" and not node.chained and node.rollout_value is not None:
                assert node.prm_value == pytest.approx(0.1 * (node.depth + 1))  # Step 0 + depth steps
    with pytest.raises(ValueError, match="needs a PRM"):
        Forest(engine, config)


# ---------------------------------------------------------------- the real tiny model

def test_every_feature_on_tiny_random_llama():
    from test_mcts_integration import check_invariants, seed_questions

    from meds3.engines import build_engine

    engine = build_engine("tiny-random-llama")
    config = SearchConfig(max_nodes=8, rollout_budget=4, min_rollouts=2, max_step_tokens=16, max_finish_tokens=24,
                          max_rollout_tokens=24, count_truncated=True, action_policy="model", refine_limit=1,
                          simulation="direct", expansion_temperature=1.0, expansion_top_p=0.95,
                          rollout_temperature=0.6, prm_prior_weight=0.5)
    forest = Forest(engine, config, PromptConfig(few_shot=1), live_trees=2, value_model=RecordingValueModel())
    trees = list(forest.run(seed_questions(2)))
    assert len(trees) == 2 and forest.stats.generated_tokens > 0
    for tree in trees:
        check_invariants(tree)
        assert {n.action for n in tree.nodes[1:]} >= {"reason"}
        assert all(n.prm_value is not None for n in tree.nodes[1:] if n.rollout_value is not None)


def test_the_paper_search_settings_run_without_failed_trees(tmp_path):
    """examples/configs/rollout_paper.yaml's search (Think, Reflect, phases, direct simulation,
    few-shot) on the tiny model, with the caps and the tree size shrunk for a CPU test."""
    from pathlib import Path

    from meds3.config import load_config
    from meds3.rollout import RolloutConfig, run_rollout

    repo = Path(__file__).resolve().parents[1]
    config = load_config(RolloutConfig, repo / "examples" / "configs" / "rollout_paper.yaml", [
        "model=tiny-random-llama", "backend=transformers", "engine={}", "live_trees=2", "limit=2",
        f"seeds=[{repo / 'seed_data' / 'clinical_calc_mc.jsonl'}]", f"output_dir={tmp_path / 'rollout'}",
        "search.max_nodes=8", "search.rollout_budget=4", "search.min_rollouts=2", "search.max_step_tokens=12",
        "search.max_finish_tokens=16", "search.max_rollout_tokens=16"])
    assert (config.search.action_policy, config.search.refine_limit, config.prompt.few_shot) == ("model", 1, 1)
    summary = run_rollout(config, progress=False)
    assert (summary["trees"], summary["failed"]) == (2, 0)
