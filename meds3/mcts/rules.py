"""The MedS3 search rules as pure functions over nodes: UCT selection and back-up."""

from __future__ import annotations

import math
from typing import Optional, Sequence

from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Node


def uct_score(child: Node, parent_visits: int, config: SearchConfig) -> float:
    """UCT score of ``child``: pruned (completed) -> ``pruned_score``; unvisited ->
    ``unvisited_score``; else ``V + C * sqrt(ln N(parent) / N(child))``."""
    if child.completed:
        return config.pruned_score
    if child.visits == 0:
        return config.unvisited_score
    return child.value + config.exploration_constant * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select_child(nodes: Sequence[Node], parent: Node, config: SearchConfig) -> Optional[Node]:
    """The child with the highest UCT score; the earliest child wins ties. None when every
    child is pruned."""
    best, best_score = None, config.pruned_score
    for cid in parent.children:
        score = uct_score(nodes[cid], parent.visits, config)
        if score > best_score:
            best, best_score = nodes[cid], score
    return best


def child_mean(nodes: Sequence[Node], parent: Node) -> float:
    """Visit-weighted mean value of the visited children: ``sum V_c N_c / sum N_c``."""
    visited = [nodes[c] for c in parent.children if nodes[c].visits > 0]
    total = sum(c.visits for c in visited)
    return sum(c.value * c.visits for c in visited) / total if total else 0.0


def back_up(nodes: Sequence[Node], leaf_id: int, value: float, rule: str = "comp") -> None:
    """Back a new node's value up to the root (in place).

    The node itself gets ``visits += 1`` and ``value``. Each ancestor gets ``visits += 1`` and
    ``V_p <- (V_p + mean) / 2`` (``comp``) or ``V_p <- mean`` (``mean``), where mean is the
    visit-weighted mean of its children; it is completed once all its children are.
    """
    leaf = nodes[leaf_id]
    leaf.visits += 1
    leaf.value = value
    cur = leaf.parent
    while cur is not None:
        p = nodes[cur]
        p.visits += 1
        mean = child_mean(nodes, p)
        p.value = (p.value + mean) / 2 if rule == "comp" else mean
        p.completed = bool(p.children) and all(nodes[c].completed for c in p.children)
        cur = p.parent
