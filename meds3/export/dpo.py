"""Preference-pair export for DPO: TRL's conversational preference format with an explicit
prompt, ``{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant]}``.

Pairing rule (pure, deterministic given ``seed``):

- per question, the candidates are every (correct path, incorrect path) pair **of the same
  tree**: a chosen path ends in a Finish leaf the rules verified correct, a rejected one in a
  leaf they verified wrong (unverifiable leaves, which may be right, and never-visited leaves
  are left out, as in :func:`meds3.mcts.trajectories.extract_trajectories`);
- the two paths share the steps from the root down to their lowest common node and diverge
  there; ``shared_steps`` counts the shared steps after Step 0. Pairs with fewer than
  ``min_shared_steps`` are dropped;
- candidates are ordered by ``shared_steps``, most first (the later two paths part, the closer
  the pair pins the step that went wrong), ties in an order drawn from ``seed``; the first
  ``max_pairs_per_question`` are kept.

Paths are the PRM trainer's (:func:`meds3.train.data.prm_records`' sources: failed trees and
duplicate trees skipped, repeated step texts dropped). Both responses hold every step, Step 0
first, in the text the policy writes, so the shared prefix appears in both.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Optional

from meds3.data.prompts import PromptConfig, chat_messages
from meds3.data.question import MedQuestion
from meds3.mcts.node import Tree
from meds3.train.data import _trajectories, _unique
from meds3.train.labels import render_trajectory

DEFAULT_MAX_PAIRS = 4  # per question: a tree with n correct and m wrong leaves has n*m candidate pairs


def shared_steps(a: dict[str, Any], b: dict[str, Any]) -> int:
    """Steps after Step 0 that two trajectories of one tree share: the length of the common
    prefix of their node ids, the root not counted."""
    common = 0
    for x, y in zip(a["node_ids"], b["node_ids"]):
        if x != y:
            break
        common += 1
    return max(common - 1, 0)


def check_dpo_options(max_pairs: Optional[int], min_shared_steps: int) -> None:
    """Raises ValueError for ``max_pairs`` below 1 or a negative ``min_shared_steps``."""
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs_per_question must be >= 1 or None, got {max_pairs}")
    if min_shared_steps < 0:
        raise ValueError(f"min_shared_steps must be >= 0, got {min_shared_steps}")


def preference_pairs(item: dict[str, Any], max_pairs: Optional[int] = DEFAULT_MAX_PAIRS, seed: int = 0,
                     min_shared_steps: int = 0, dedupe: bool = True) -> list[tuple[int, dict, dict]]:
    """The chosen pairs of one question (``item`` as built by the PRM data code: ``pos`` and
    ``neg`` trajectory dicts with ``node_ids`` and ``source``), as ``(shared_steps, chosen,
    rejected)`` in the rule's order (module docstring).

    Raises:
        ValueError: ``max_pairs`` below 1 or a negative ``min_shared_steps``.
    """
    check_dpo_options(max_pairs, min_shared_steps)
    pos = [t for t in item["pos"] if t["verdict"] is True]
    neg = [t for t in item["neg"] if t["verdict"] is False]
    if dedupe:
        pos, neg = _unique(pos), _unique(neg)
    candidates = [(shared_steps(c, r), c, r) for c in pos for r in neg
                  if c.get("source") == r.get("source")]  # paths of different trees share no node
    candidates = [p for p in candidates if p[0] >= min_shared_steps]
    # why: seeded per question so one question's ties do not depend on how many came before it
    rng = random.Random(f"{seed}:{item['question_id']}")
    ties = [rng.random() for _ in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i][0], ties[i]))
    return [candidates[i] for i in order[:max_pairs]]


def dpo_export(trees: Iterable[Tree], max_pairs_per_question: Optional[int] = DEFAULT_MAX_PAIRS, seed: int = 0,
               min_shared_steps: int = 0, prompt: PromptConfig | None = None,
               dedupe: bool = True) -> list[dict[str, Any]]:
    """Preference records from ``trees`` (question order of the input), each
    ``{"prompt", "chosen", "rejected", "question_id"}``; see the module docstring for the rule.

    Raises:
        ValueError: see :func:`preference_pairs`.
    """
    check_dpo_options(max_pairs_per_question, min_shared_steps)
    out = []
    for item in _trajectories(trees, prompt):
        question = MedQuestion.from_dict(item["question"])
        for _, chosen, rejected in preference_pairs(item, max_pairs_per_question, seed, min_shared_steps, dedupe):
            out.append({"prompt": chat_messages(question, prompt),
                        "chosen": [{"role": "assistant", "content": render_trajectory(chosen["steps"], prompt)[0]}],
                        "rejected": [{"role": "assistant", "content": render_trajectory(rejected["steps"], prompt)[0]}],
                        "question_id": item["question_id"]})
    return out
