"""Back-up and UCT selection: exact values computed by hand."""

import math

import pytest

from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Node
from meds3.mcts.rules import back_up, select_child, uct_score


def small_tree():
    # root(0) -> 1, 2 ; 1 -> 3
    nodes = [Node(0, None, 0, "root", "r", children=[1, 2]), Node(1, 0, 1, "reason", "a", children=[3]),
             Node(2, 0, 1, "reason", "b"), Node(3, 1, 2, "reason", "c")]
    return nodes


def test_comp_backup_sequence():
    nodes = small_tree()
    back_up(nodes, 1, 0.5, "comp")
    assert (nodes[1].visits, nodes[1].value, nodes[0].visits, nodes[0].value) == (1, 0.5, 1, 0.25)
    back_up(nodes, 2, 1.0, "comp")  # root mean (0.5 + 1) / 2 = 0.75 -> (0.25 + 0.75) / 2
    assert (nodes[0].visits, nodes[0].value) == (2, 0.5)
    back_up(nodes, 3, 0.0, "comp")  # node 1: (0.5 + 0) / 2; root mean (0.25*2 + 1) / 3 = 0.5
    assert (nodes[1].visits, nodes[1].value) == (2, 0.25)
    assert (nodes[0].visits, nodes[0].value) == (3, pytest.approx(0.5))


def test_mean_backup_sequence():
    nodes = small_tree()
    back_up(nodes, 1, 0.5, "mean")
    assert nodes[0].value == 0.5
    back_up(nodes, 2, 1.0, "mean")
    assert nodes[0].value == 0.75
    back_up(nodes, 3, 0.0, "mean")
    assert nodes[1].value == 0.0 and nodes[0].value == pytest.approx(1 / 3)


def test_completed_propagates_when_all_children_are():
    nodes = small_tree()
    nodes[3].completed = True
    back_up(nodes, 3, 1.0)
    assert nodes[1].completed and not nodes[0].completed  # node 2 is still open
    nodes[2].completed = True
    back_up(nodes, 2, 0.0)
    assert nodes[0].completed


def test_uct_scores_and_choice_order():
    cfg = SearchConfig()
    parent = Node(0, None, 0, "root", "r", children=[1, 2, 3, 4], visits=3)
    a = Node(1, 0, 1, "reason", "a", visits=2, value=0.5)
    b = Node(2, 0, 1, "reason", "b", visits=1, value=0.2)
    c = Node(3, 0, 1, "reason", "c")  # unvisited
    d = Node(4, 0, 1, "finish", "d", visits=1, value=1.0, completed=True)  # pruned
    nodes = [parent, a, b, c, d]
    assert uct_score(a, 3, cfg) == pytest.approx(0.5 + 2 * math.sqrt(math.log(3) / 2))  # 1.548143
    assert uct_score(b, 3, cfg) == pytest.approx(0.2 + 2 * math.sqrt(math.log(3)))  # 2.296295
    assert uct_score(c, 3, cfg) == 5.0 and uct_score(d, 3, cfg) == -1.0
    assert select_child(nodes, parent, cfg) is c
    c.completed = True
    assert select_child(nodes, parent, cfg) is b
    b.completed = True
    assert select_child(nodes, parent, cfg) is a
    a.completed = True
    assert select_child(nodes, parent, cfg) is None


def test_ties_go_to_the_earliest_child():
    cfg = SearchConfig()
    parent = Node(0, None, 0, "root", "r", children=[1, 2], visits=2)
    nodes = [parent, Node(1, 0, 1, "reason", "a", visits=1, value=0.3),
             Node(2, 0, 1, "reason", "b", visits=1, value=0.3)]
    assert select_child(nodes, parent, cfg).id == 1


@pytest.mark.parametrize("depth, k", [(0, 20), (1, 10), (2, 6), (3, 5), (4, 5), (9, 5)])
def test_rollout_count_per_depth(depth, k):
    assert SearchConfig().rollouts_at(depth) == k
