"""Hand-written search trees for the training tests: known steps, values and verdicts."""

from __future__ import annotations

from meds3.data.prompts import ROOT_STEP
from meds3.data.question import MedQuestion
from meds3.mcts.node import Node, Tree
from meds3.rollout.store import TreeStore


def question(qid: str = "q1") -> MedQuestion:
    return MedQuestion(id=qid, question="A 30-year-old woman weighs 70 kg and is 1.75 m tall. What is her BMI?",
                       options={"A": "18.5", "B": "22.9", "C": "25.0", "D": "30.1"}, answer="B",
                       task_type="multiple_choice", domain="calc", source="handmade")


def node(i, parent, depth, kind, step, value, verdict=None, answer=None, visits=1) -> Node:
    return Node(id=i, parent=parent, depth=depth, kind=kind, step=step, value=value, visits=visits,
                verdict=verdict, answer=answer, terminal=kind == "finish", completed=kind == "finish")


def make_tree(qid: str = "q1") -> Tree:
    """Correct leaves 3 (path 0-1-3), 5 (0-2-5, a Finish spanning two steps) and 8 (0-7-8,
    the same texts as 0-1-3); wrong leaf 4, unverifiable leaf 6; leaf 9 never visited."""
    nodes = [
        node(0, None, 0, "root", ROOT_STEP, 0.6, visits=8),
        node(1, 0, 1, "reason", "BMI is weight divided by height squared.", 0.75, visits=4),
        node(2, 0, 1, "reason", "Square the height: 1.75 * 1.75 = 3.06.", 0.5, visits=3),
        node(3, 1, 2, "finish", "70 / 3.0625 = 22.9. The answer is B.", 1.0, True, "B"),
        node(4, 1, 2, "finish", "70 / 1.75 = 40. The answer is D.", 0.0, False, "D"),
        node(5, 2, 2, "finish", "Divide 70 by 3.06 to get 22.9.\n\nStep 3: The answer is B.", 1.0, True, "B"),
        node(6, 2, 2, "finish", "The answer is C.", 0.0, None, None),
        node(7, 0, 1, "reason", "BMI is weight divided by height squared.", 0.7, visits=1),
        node(8, 7, 2, "finish", "70 / 3.0625 = 22.9. The answer is B.", 1.0, True, "B"),
        node(9, 7, 2, "finish", "Unvisited. The answer is B.", 0.0, True, "B", visits=0),
    ]
    for n in nodes[1:]:
        nodes[n.parent].children.append(n.id)
    return Tree(question=question(qid), nodes=nodes, status="complete", stop_reason="max_nodes")


def write_trees(folder, n_questions: int = 2) -> None:
    """A rollout-like output folder: ``folder/trees/`` with ``n_questions`` trees."""
    store = TreeStore(folder / "trees", flush_every=1)
    store.add_many(make_tree(f"q{i + 1}") for i in range(n_questions))
    store.close()
