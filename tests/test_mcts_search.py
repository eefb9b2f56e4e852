"""The tree search driven by hand: every node value after a scripted run, stop rules,
re-typing, forced finishing, and the requests the tree emits."""

import json

import pytest
from search_helpers import RIGHT, WRONG, Q, kinds, render, rollouts, s

from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Tree, tree_shapes
from meds3.mcts.search import TreeSearch


def run_scripted_scenario(max_nodes=8):
    search = TreeSearch(Q, SearchConfig(max_nodes=max_nodes), render)
    # Round 1: the root expands with three Reason steps.
    assert kinds(search.requests()) == [(0, "reason", 3)]
    search.apply([[s("A1"), s("A2"), s("A3")]])
    # Round 2: rollouts of the three depth-1 steps, k = max(20 // 2, 5) = 10 each.
    assert kinds(search.requests()) == [(1, "rollout", 10), (2, "rollout", 10), (3, "rollout", 10)]
    search.apply([rollouts(7, 10), rollouts(2, 10), rollouts(10, 10)])
    # Round 3: UCT picks node 3 (1.0 + 2*sqrt(ln 3)); its rollout value >= 0.9: one Finish child.
    assert kinds(search.requests()) == [(3, "finish", 1)]
    search.apply([[s(RIGHT, "eos")]])
    # Round 4: node 3 is completed (pruned); node 1 wins; 2 Reason + 1 Finish.
    assert kinds(search.requests()) == [(1, "reason", 2), (1, "finish", 1)]
    search.apply([[s("R1"), s("Hence the answer is B.")], [s(WRONG, "eos")]])
    # Round 5: only the Reason step at depth 2 is rolled out: k = max(20 // 3, 5) = 6.
    assert kinds(search.requests()) == [(5, "rollout", 6)]
    search.apply([rollouts(3, 6)])
    return search


def test_every_value_after_a_scripted_search():
    search = run_scripted_scenario(max_nodes=100)
    n = search.nodes
    assert [x.kind for x in n] == ["root", "reason", "reason", "reason", "finish", "reason", "finish", "finish"]
    assert [x.verdict for x in n[4:]] == [True, None, True, False]
    assert n[6].step == "Hence the answer is B."  # a Reason step stating the answer: re-typed Finish
    search.requests()  # applies the pending back-ups (5, 6, 7 in child order) and selects again
    expected = {  # (visits, value), computed by hand with the comp rule
        0: (7, 0.66364583), 1: (4, 0.5875), 2: (1, 0.2), 3: (2, 1.0), 4: (1, 1.0), 5: (1, 0.5), 6: (1, 1.0),
        7: (1, 0.0)}
    for node_id, (visits, value) in expected.items():
        assert (n[node_id].visits, n[node_id].value) == (visits, pytest.approx(value, abs=1e-8)), node_id
    assert [x.rollout_value for x in n[1:4]] == [0.7, 0.2, 1.0] and n[5].rollout_value == 0.5
    assert (n[1].rollout_count, n[1].rollout_correct) == (10, 7)
    assert n[3].completed and not n[1].completed


def test_max_nodes_stop_with_forced_finishing():
    search = run_scripted_scenario(max_nodes=8)
    # 8 nodes and only 2 correct leaves: every open leaf (nodes 2 and 5) is forced to finish.
    assert kinds(search.requests()) == [(2, "force_finish", 1), (5, "force_finish", 1)]
    search.apply([[s(RIGHT, "eos")], [s("The answer is A.", "eos")]])
    assert search.requests() == [] and search.done
    tree = search.tree
    assert (tree.status, tree.stop_reason) == ("complete", "max_nodes")
    n = tree.nodes
    assert [(x.parent, x.verdict) for x in n[8:]] == [(2, True), (5, False)]
    expected = {0: (9, 0.65080729), 1: (5, 0.48125), 2: (2, 0.6), 5: (2, 0.25), 8: (1, 1.0), 9: (1, 0.0)}
    for node_id, (visits, value) in expected.items():
        assert (n[node_id].visits, n[node_id].value) == (visits, pytest.approx(value, abs=1e-8)), node_id
    assert n[0].completed and len(tree.correct_leaves()) == 3
    assert n[0].visits == len(n) - 1  # every node but the root was backed up exactly once


def test_no_forced_finishing_with_enough_correct_leaves():
    cfg = SearchConfig(max_nodes=4, force_finish_max_correct=0)
    search = TreeSearch(Q, cfg, render)
    search.requests()
    search.apply([[s(RIGHT, "eos"), s("A2"), s("A3")]])
    search.requests()
    search.apply([rollouts(1, 10), rollouts(1, 10)])
    assert search.requests() == [] and search.tree.stop_reason == "max_nodes"


def test_stop_after_target_correct_leaves():
    search = TreeSearch(Q, SearchConfig(target_correct_leaves=2), render)
    search.requests()
    search.apply([[s(RIGHT, "eos"), s("Thus the answer is (B)."), s("A3")]])
    assert search.requests() == [] and search.tree.stop_reason == "correct_leaves"
    assert search.nodes[3].rollout_value is None  # no rollout was spent after the stop was known
    assert (search.nodes[3].visits, search.nodes[0].visits) == (0, 2)


def test_stop_when_every_leaf_is_finished():
    search = TreeSearch(Q, SearchConfig(), render)
    search.requests()
    search.apply([[s(RIGHT, "eos"), s(WRONG, "eos"), s("")]])
    assert search.requests() == [] and search.tree.stop_reason == "all_finished"
    assert search.nodes[3].failed == "empty generation" and search.nodes[0].completed
    # root: (0 + 1)/2 = 0.5; then (0.5 + 0.5)/2 = 0.5; then (0.5 + 1/3)/2
    assert (search.nodes[0].visits, search.nodes[0].value) == (3, pytest.approx(0.41666667))


def test_unverifiable_outputs_never_crash():
    search = TreeSearch(Q, SearchConfig(), render)
    search.requests()
    # A response the model ended without any answer, a truncated step, and an empty one.
    search.apply([[s("I think it depends.", "eos"), s("long step " * 5, "length"), s("   ", "stop")]])
    n = search.nodes
    assert (n[1].kind, n[1].verdict, n[1].failed.startswith("unverifiable")) == ("finish", None, True)
    assert (n[2].kind, n[2].terminal) == ("reason", False)
    assert (n[3].failed, n[3].completed) == ("empty generation", True)
    assert kinds(search.requests()) == [(2, "rollout", 10)]
    search.apply([[s("", "eos")] * 10])  # rollouts that ended with no answer count as not correct
    assert n[2].rollout_value == 0.0


def test_reason_requests_stop_at_the_next_step_header():
    search = TreeSearch(Q, SearchConfig(), render)
    req = search.requests()[0]
    assert req.stop == ["Step 2:", "\nStep "] and req.max_new_tokens == 256
    assert req.prompt.endswith("Step 0: Let's break down this problem step by step.\n\nStep 1: ")
    assert req.temperature == 0.8 and req.top_p == 0.9


def test_request_seeds_are_batch_independent():
    a = TreeSearch(Q, SearchConfig(seed=3), render).requests()[0].seed
    b = TreeSearch(Q, SearchConfig(seed=3), render).requests()[0].seed
    c = TreeSearch(Q, SearchConfig(seed=4), render).requests()[0].seed
    assert a == b != c


def test_tree_json_round_trip_and_networkx():
    search = run_scripted_scenario(max_nodes=8)
    search.requests()
    search.apply([[s(RIGHT, "eos")], [s("The answer is A.", "eos")]])
    search.requests()
    tree = search.tree
    data = json.loads(json.dumps(tree.to_dict()))
    again = Tree.from_dict(data)
    assert again == tree and again.to_dict() == tree.to_dict()
    graph = tree.to_networkx()
    assert graph.number_of_nodes() == 10 and graph.number_of_edges() == 9
    assert graph.nodes[4]["verdict"] is True and list(graph.successors(1)) == [5, 6, 7]
    with pytest.raises(ValueError, match="schema version 99"):
        Tree.from_dict({**data, "schema_version": 99})


def test_tree_shapes_pin_every_node_keyed_by_question():
    search = run_scripted_scenario(max_nodes=100)
    search.requests()
    tree = search.tree
    other = Tree.from_dict({**tree.to_dict(), "question": {**tree.question.to_dict(), "id": "q2"}})
    shapes = tree_shapes([other, tree], ("parent", "kind", "verdict", "value"))
    assert list(shapes) == ["q2", "q1"] and shapes["q1"] == shapes["q2"]  # keyed, not positional
    assert shapes["q1"][:5] == [(None, "root", None, 0.663645833), (0, "reason", None, 0.5875),
                                (0, "reason", None, 0.2), (0, "reason", None, 1.0), (3, "finish", True, 1.0)]
    # a stored (JSON) tree gives the same shapes as the searched one; order of trees does not matter
    stored = json.loads(json.dumps(tree.to_dict()))
    assert tree_shapes([stored]) == tree_shapes([tree])
    assert tree_shapes([tree, other]) == tree_shapes([other, tree])
    # a value a hair off still compares equal after rounding; a different step does not
    nudged = Tree.from_dict(stored)
    nudged.nodes[1].value += 1e-12
    assert tree_shapes([nudged]) == tree_shapes([tree])
    assert tree_shapes([nudged], digits=None) != tree_shapes([tree], digits=None)  # exact on request
    nudged.nodes[2].step = "changed"
    assert tree_shapes([nudged]) != tree_shapes([tree])
    with pytest.raises(ValueError, match="unknown node fields \\['colour'\\]"):
        tree_shapes([tree], ("parent", "colour"))
