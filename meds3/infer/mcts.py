"""PRM-guided MCTS at test time: the MedS3 search with every node valued by the PRM (no rollouts,
no rule check), and the answer of the best-valued Finish leaf.

Present in the MedS3 code (``tree.py`` with a ``value_function``) beside sampling + P-VS; here it
is one more inference strategy, evaluated by ``meds3 eval`` with ``mcts: true``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Tree


def inference_search_config(**overrides: Any) -> SearchConfig:
    """The test-time search: PRM values only (``prm_prior_weight`` 1, ``finish_value`` ``prm``),
    20 nodes per question unless overridden.

    Raises:
        ValueError: overrides that turn rule checks or rollouts back on.
    """
    base = {"max_nodes": 20, **overrides, "prm_prior_weight": 1.0, "finish_value": "prm"}
    return SearchConfig(**base)


@dataclass
class MCTSAnswer:
    """The answer of one PRM-guided search.

    ``answer``: the extracted answer of the Finish leaf with the highest PRM value (ties: the
    earliest leaf), None when no leaf states one. ``correct``: that leaf's rule verdict, for
    reporting only (the search never saw it). ``value``: the leaf's PRM score.
    """

    question_id: str
    answer: Optional[str]
    correct: Optional[bool]
    value: Optional[float]
    steps: list[str]
    tokens: int
    nodes: int
    tree: Tree

    def to_record(self) -> dict[str, Any]:
        """A JSON line for the evaluation's response files (the tree is left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "tree"}


def best_leaf_answer(tree: Tree) -> MCTSAnswer:
    """The tree's answer: its best PRM-valued Finish leaf that states an answer."""
    leaves = [n for n in tree.finish_leaves() if n.visits > 0 and n.answer is not None]
    best = max(leaves, key=lambda n: n.value, default=None)  # max keeps the first of equal values
    steps = tree.steps_to(best.id) if best is not None else []
    return MCTSAnswer(tree.question.id, best.answer if best else None, best.verdict if best else None,
                      float(best.value) if best else None, steps, tree.tokens, len(tree.nodes), tree)


def prm_guided_mcts(questions: Sequence[MedQuestion], engine: Any, scorer: Any, config: SearchConfig | None = None,
                    prompt_config: PromptConfig | None = None, adapter: Optional[str] = None,
                    live_trees: int = 8) -> list[MCTSAnswer]:
    """Answer each question by PRM-guided MCTS; all questions' requests share engine calls.

    Args:
        questions: the questions.
        engine: a generation engine (the policy).
        scorer: the PRM (``score_batch``, e.g. :class:`meds3.train.PRMScorer`).
        config: a test-time search config (default :func:`inference_search_config`).
        prompt_config: prompt rendering.
        adapter: the policy's LoRA adapter (None: the base model).
        live_trees: questions searched at once.

    Returns:
        One :class:`MCTSAnswer` per question, in input order.

    Raises:
        ValueError: a config that is not a test-time one (rule-checked values would use the gold answer).
    """
    from meds3.mcts.forest import Forest

    config = config or inference_search_config()
    if config.finish_value != "prm" or config.prm_prior_weight != 1:
        raise ValueError("PRM-guided MCTS needs finish_value 'prm' and prm_prior_weight 1 "
                         "(see inference_search_config)")
    forest = Forest(engine, config, prompt_config, live_trees=live_trees, adapter=adapter, value_model=scorer)
    by_id = {t.question.id: best_leaf_answer(t) for t in forest.run(questions)}
    return [by_id[q.id] for q in questions]
