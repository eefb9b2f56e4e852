"""Honest node values, computed by hand on scripted trees: multi-step Finish outputs become
chains of nodes (only the answer step carries the bare verdict), truncated outputs count as no
outcome, and correct leaves count once per distinct reasoning trace."""

import pytest
from search_helpers import Q, kinds, render, rollouts, s

from meds3.mcts.config import SearchConfig
from meds3.mcts.search import TreeSearch
from meds3.mcts.trajectories import extract_trajectories, leaf_trajectory

MULTI = "Compute x.\n\nStep 3: Compare y.\n\nStep 4: The answer is B."


def start(config=None):
    """Root -> three Reason steps with rollout values 0.7, 0.2, 0.9; node 3 (>= bear_ratio 0.9)
    is selected next and expands with one Finish child. Root after the three back-ups:
    0.35 -> (0.35 + 0.45) / 2 = 0.4 -> (0.4 + 0.6) / 2 = 0.5."""
    search = TreeSearch(Q, config or SearchConfig(), render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    search.requests()
    search.apply([rollouts(7, 10), rollouts(2, 10), rollouts(9, 10)])
    assert kinds(search.requests()) == [(3, "finish", 1)]
    assert search.nodes[0].value == pytest.approx(0.5)
    return search


def values(search):
    return [(n.visits, round(n.value, 8)) for n in search.nodes]


def test_multi_step_finish_becomes_a_chain_with_backed_up_values():
    search = start()
    search.apply([[s(MULTI, "eos")]])
    search.requests()  # backs the answer step up through the chain
    n = search.nodes
    assert [(x.id, x.parent, x.depth, x.kind, x.chained) for x in n[4:]] == [
        (4, 3, 2, "reason", True), (5, 4, 3, "reason", True), (6, 5, 4, "finish", False)]
    assert [x.step for x in n[4:]] == ["Compute x.", "Compare y.", "The answer is B."]
    assert n[3].children == [4] and n[4].children == [5] and n[5].children == [6]
    # Chain links start at the parent's value (0.9) with one visit; the back-up of the answer
    # step (1.0): node 5 (0.9 + 1.0) / 2 = 0.95, node 4 (0.9 + 0.95) / 2 = 0.925, node 3
    # (0.9 + 0.925) / 2 = 0.9125, root (0.5 + (0.7 + 0.2 + 2 * 0.9125) / 4) / 2 = 0.590625.
    assert values(search) == [(4, 0.590625), (1, 0.7), (1, 0.2), (2, 0.9125), (2, 0.925), (2, 0.95), (1, 1.0)]
    assert n[6].verdict is True and all(x.completed for x in n[3:])
    assert search.tree.search_nodes == 5  # chained steps do not count toward max_nodes
    traj = leaf_trajectory(search.tree, 6)
    assert traj.steps == [search.nodes[0].step, "A3", "Compute x.", "Compare y.", "The answer is B."]
    assert traj.values == pytest.approx([0.590625, 0.9125, 0.925, 0.95, 1.0])  # only the answer step is 0/1
    assert traj.node_ids == [0, 3, 4, 5, 6]


def test_a_wrong_multi_step_finish_moves_the_chain_toward_zero():
    search = start()
    search.apply([[s(MULTI.replace("is B", "is C"), "eos")]])
    search.requests()
    # node 5 (0.9 + 0) / 2 = 0.45, node 4 (0.9 + 0.45) / 2 = 0.675, node 3 (0.9 + 0.675) / 2 = 0.7875.
    assert values(search)[3:] == [(2, 0.7875), (2, 0.675), (2, 0.45), (1, 0.0)]


def test_split_finish_off_keeps_one_node_labelled_with_the_verdict():
    search = start(SearchConfig(split_finish=False))
    search.apply([[s(MULTI, "eos")]])
    search.requests()
    assert len(search.nodes) == 5 and search.nodes[4].kind == "finish"
    traj = leaf_trajectory(search.tree, 4)
    assert traj.steps[2:] == ["Compute x.", "Compare y.", "The answer is B."]
    assert traj.values[2:] == [1.0, 1.0, 1.0]  # outcome labels on every part: what the chain avoids


def test_a_multi_step_finish_without_a_final_answer_is_not_split():
    search = start()
    search.apply([[s("Compute x.\n\nStep 3: Compare y.", "eos")]])
    assert len(search.nodes) == 5 and search.nodes[4].verdict is None  # unverifiable, one node


def test_a_truncated_finish_is_no_outcome():
    search = start()
    search.apply([[s("The answer is C. Also consider", "length")]])
    reqs = search.requests()
    n = search.nodes
    assert (n[4].kind, n[4].truncated, n[4].verdict, n[4].visits, n[4].completed) == ("finish", True, None, 0, True)
    assert n[4].failed.startswith("truncated")
    assert values(search)[:4] == [(3, 0.5), (1, 0.7), (1, 0.2), (1, 0.9)]  # nothing backed up
    # Node 3's only child is pruned: node 3 is marked completed and selection moves to node 1.
    assert n[3].completed
    assert kinds(reqs) == [(1, "reason", 2), (1, "finish", 1)]
    assert extract_trajectories(search.tree)["neg"] == []  # not a negative training path


def test_count_truncated_restores_verifying_truncated_outputs():
    search = start(SearchConfig(count_truncated=True))
    search.apply([[s("The answer is C. Also consider", "length")]])
    search.requests()
    assert (search.nodes[4].verdict, search.nodes[4].truncated) == (False, True)
    assert values(search)[3:] == [(2, 0.45), (1, 0.0)]  # node 3: (0.9 + 0) / 2


def test_truncated_rollouts_are_left_out_of_the_value():
    search = TreeSearch(Q, SearchConfig(), render)
    search.requests()
    search.apply([[s("A1"), s("A2"), s("A3")]])
    search.requests()
    search.apply([rollouts(7, 9, truncated=1), [s("cut", "length")] * 10, rollouts(3, 10)])
    search.requests()
    n = search.nodes
    assert (n[1].rollout_count, n[1].rollout_correct, n[1].rollout_truncated) == (9, 7, 1)
    assert n[1].rollout_value == pytest.approx(7 / 9)
    # Node 2: every rollout cut, no evidence; it takes its parent's value at back-up time:
    # root after node 1 = (0 + 7/9) / 2 = 7/18.
    assert (n[2].rollout_value, n[2].rollout_count, n[2].rollout_truncated) == (None, 0, 10)
    assert n[2].value == pytest.approx(7 / 18) and n[2].visits == 1
    root_after_2 = (7 / 18 + (7 / 9 + 7 / 18) / 2) / 2
    assert n[0].value == pytest.approx((root_after_2 + (7 / 9 + 7 / 18 + 0.3) / 3) / 2)


def test_correct_leaves_count_once_per_distinct_trace():
    config = SearchConfig(target_correct_leaves=2)
    search = TreeSearch(Q, config, render)
    search.requests()
    # Two re-typed Finish steps with the same text up to whitespace, and one Reason step.
    search.apply([[s("So the answer is B."), s("So the answer is \n B. "), s("R")]])
    assert len(search.tree.correct_leaves()) == 2 and len(search.tree.distinct_correct_leaves()) == 1
    assert kinds(search.requests()) == [(3, "rollout", 10)]  # not stopped: one distinct correct trace
    search.apply([rollouts(10, 10)])
    reqs = search.requests()
    assert kinds(reqs) == [(3, "finish", 1)]
    search.apply([[s("Therefore the answer is B.", "eos")]])
    assert search.requests() == [] and search.tree.stop_reason == "correct_leaves"


def test_forced_finishing_uses_the_distinct_count():
    config = SearchConfig(max_nodes=4, force_finish_max_correct=1, target_correct_leaves=3)
    search = TreeSearch(Q, config, render)
    search.requests()
    search.apply([[s("So the answer is B."), s("So the answer is B."), s("R")]])
    # 4 nodes: max_nodes; 2 correct leaves but 1 distinct (<= 1): the open leaf is forced to finish.
    assert kinds(search.requests()) == [(3, "rollout", 10)]
    search.apply([rollouts(5, 10)])
    assert kinds(search.requests()) == [(3, "force_finish", 1)]
