"""The real search on real (tiny) models: tree invariants hold whatever the model writes."""

import json

import pytest

from meds3.data import load_questions
from meds3.mcts import Forest, SearchConfig, Tree
from meds3.verify import verify

SMALL = dict(max_nodes=8, rollout_budget=4, min_rollouts=2, max_step_tokens=24, max_finish_tokens=32,
             max_rollout_tokens=32)


def seed_questions(n):
    from pathlib import Path

    return list(load_questions(Path(__file__).resolve().parents[1] / "seed_data" / "clinical_calc.jsonl"))[:n]


def check_invariants(tree: Tree):
    nodes = tree.nodes
    assert tree.status == "complete", tree.error
    assert nodes[0].kind == "root" and nodes[0].parent is None
    for n in nodes:
        assert 0.0 <= n.value <= 1.0
        for c in n.children:
            assert nodes[c].parent == n.id and nodes[c].depth == n.depth + 1
        if n.children and n.visits:
            # visits add up: a node was visited once itself plus once per back-up below it
            assert n.visits == (0 if n.kind == "root" else 1) + sum(nodes[c].visits for c in n.children)
        if n.kind == "finish" and n.truncated and n.visits == 0:
            assert n.verdict is None and n.failed.startswith("truncated")  # cut at the cap: no outcome
        elif n.kind == "finish":
            assert n.verdict == verify(n.step, tree.question).correct
        if n.rollout_count:
            assert n.rollout_value == n.rollout_correct / n.rollout_count
    assert Tree.from_dict(json.loads(json.dumps(tree.to_dict()))) == tree


def test_search_on_tiny_random_llama():
    from meds3.engines import build_engine

    engine = build_engine("tiny-random-llama")
    # random weights write to the cap: shorter caps, the same tree size and invariants
    config = SearchConfig(**dict(SMALL, max_step_tokens=12, max_finish_tokens=16, max_rollout_tokens=16))
    forest = Forest(engine, config, live_trees=3)
    trees = list(forest.run(seed_questions(3)))
    assert len(trees) == 3
    for tree in trees:
        check_invariants(tree)
    assert forest.stats.engine_calls == forest.stats.rounds and forest.stats.generated_tokens > 0


@pytest.mark.slow
def test_search_on_the_embedded_model():
    from meds3.engines import build_engine

    engine = build_engine("smollm2-135m-instruct")
    trees = list(Forest(engine, SearchConfig(**SMALL), live_trees=2).run(seed_questions(2)))
    for tree in trees:
        check_invariants(tree)
        assert any(n.step for n in tree.nodes[1:])  # the model wrote steps
