"""The forest driver: one engine call per round, continuous batching, failure handling,
trajectories, and batch-independence of the trees."""

import pytest
from scripted_engine import ScriptedEngine

from meds3.data import MedQuestion
from meds3.mcts import Forest, SearchConfig, extract_trajectories, tree_shapes

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(7)]


def shapes(trees):
    return tree_shapes(trees, ("parent", "kind", "verdict", "value"))


def test_one_engine_call_per_round_across_trees():
    engine = ScriptedEngine()
    forest = Forest(engine, SearchConfig(max_nodes=12), live_trees=3)
    trees = list(forest.run(QS))
    assert sorted(t.question.id for t in trees) == [q.id for q in QS]
    assert len(engine.calls) == forest.stats.rounds == forest.stats.engine_calls
    assert max(engine.calls) > 1  # requests of several trees shared calls
    for t in trees:
        assert t.status == "complete"
        assert t.root.visits == sum(1 for n in t.nodes[1:] if n.visits > 0)
        assert all(0.0 <= n.value <= 1.0 for n in t.nodes)
        assert len(t.nodes) <= 12 + 3 + len(t.leaves())  # max_nodes, one last expansion, forced finishes


def test_trees_do_not_depend_on_batching():
    one = list(Forest(ScriptedEngine(), SearchConfig(max_nodes=12), live_trees=1).run(QS))
    many = list(Forest(ScriptedEngine(), SearchConfig(max_nodes=12), live_trees=5).run(QS))
    assert shapes(one) == shapes(many)


def test_continuous_batching_keeps_the_batch_full():
    forest = Forest(ScriptedEngine(), SearchConfig(max_nodes=12), live_trees=2, schedule="rounds")
    live_counts = []
    original = forest._run_round

    def spy(batch):
        live_counts.append(len(batch))
        return original(batch)

    forest._run_round = spy
    list(forest.run(QS))
    assert live_counts
    # every round but the tail of the job has both slots busy
    assert live_counts[: len(live_counts) // 2] == [2] * (len(live_counts) // 2)


def test_engine_error_is_retried_once():
    engine = ScriptedEngine(fail_calls={2})
    trees = list(Forest(engine, SearchConfig(max_nodes=10), live_trees=2).run(QS[:2]))
    assert all(t.status == "complete" for t in trees)
    assert shapes(trees) == shapes(list(Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=2).run(QS[:2])))


def test_persistent_engine_error_fails_only_the_affected_tree():
    engine = ScriptedEngine(fail_prompts=("Question 1?",))
    forest = Forest(engine, SearchConfig(max_nodes=10), live_trees=3)
    trees = {t.question.id: t for t in forest.run(QS[:3])}
    assert trees["q1"].status == "failed" and "injected failure" in trees["q1"].error
    assert trees["q0"].status == trees["q2"].status == "complete"
    assert forest.stats.trees_failed == 1


def test_trajectories_pos_and_neg():
    tree = next(Forest(ScriptedEngine(), SearchConfig(max_nodes=20), live_trees=1).run(QS[:1]))
    record = extract_trajectories(tree)
    finish = [n for n in tree.finish_leaves() if n.visits > 0]
    assert len(record["pos"]) == sum(n.verdict is True for n in finish)
    assert len(record["pos"]) + len(record["neg"]) == len(finish)
    for traj in record["pos"]:
        assert traj["verdict"] is True and traj["steps"][0] == "Let's break down this problem step by step."
        assert len(traj["steps"]) == len(traj["values"]) == len(traj["node_ids"])
        assert traj["values"][-1] == 1.0 and traj["node_ids"][0] == 0


def test_live_trees_must_be_positive():
    with pytest.raises(ValueError, match="live_trees"):
        Forest(ScriptedEngine(), live_trees=0)
