"""Root-to-leaf trajectories of a search tree: MedS3's ``pos``/``neg`` records."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from meds3.data.prompts import PromptConfig, split_steps
from meds3.mcts.node import Tree


@dataclass
class Trajectory:
    """Steps from the root (Step 0) to a Finish leaf, each with its backed-up value.

    The search already splits a multi-step Finish output into a chain of nodes with their own
    values (``SearchConfig.split_finish``). A Finish node that still spans several ``Step k:``
    blocks (the split turned off, or an output whose last block states no answer) is split
    here, each part taking the Finish node's value.
    """

    steps: list[str]
    values: list[float]
    node_ids: list[int]
    answer: Optional[str]
    verdict: Optional[bool]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def leaf_trajectory(tree: Tree, leaf_id: int, prompt_config: PromptConfig | None = None) -> Trajectory:
    """The trajectory from the root to ``leaf_id``."""
    steps, values, ids = [], [], []
    for node in tree.path(leaf_id):
        parts = split_steps(node.step, prompt_config) if node.kind == "finish" else [node.step]
        for part in parts or [node.step]:
            steps.append(part)
            values.append(float(node.value))
            ids.append(node.id)
    leaf = tree.nodes[leaf_id]
    return Trajectory(steps, values, ids, leaf.answer, leaf.verdict)


def extract_trajectories(tree: Tree, prompt_config: PromptConfig | None = None) -> dict[str, Any]:
    """Per question: ``pos`` (correct Finish leaves) and ``neg`` (incorrect or unverifiable
    ones), each a list of trajectory dicts, in node order."""
    pos, neg = [], []
    for leaf in tree.finish_leaves():
        if leaf.visits == 0:
            continue  # never backed up (e.g. truncated at the token cap): its value is not an estimate
        (pos if leaf.verdict is True else neg).append(leaf_trajectory(tree, leaf.id, prompt_config).to_dict())
    q = tree.question
    return {"question_id": q.id, "question": q.to_dict(), "pos": pos, "neg": neg}
