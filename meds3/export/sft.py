"""Chat-messages SFT export: one ``{"messages": [system, user, assistant]}`` record per
verified trajectory that the policy trainer would learn from.

The trajectories are chosen by :func:`meds3.train.data.sft_records` (the policy trainer's own
selection: correct paths, deduplicated, ``top_k`` / ``max_per_question``), and the turns are the
text the policy sees: :func:`meds3.data.prompts.chat_messages` for the system and user turns,
:func:`meds3.train.labels.render_trajectory` (Step 0 included) for the assistant turn. A tool
that applies the model's chat template to these messages gets the sequence meds3 trains on.
"""

from __future__ import annotations

from typing import Any, Iterable

from meds3.data.prompts import PromptConfig, chat_messages
from meds3.data.question import MedQuestion
from meds3.mcts.node import Tree
from meds3.train.data import SFTDataConfig, sft_records
from meds3.train.labels import render_trajectory


def sft_messages(record: dict[str, Any], prompt: PromptConfig | None = None) -> dict[str, Any]:
    """One SFT record of :func:`~meds3.train.data.sft_records` as a chat-messages record.

    Returns:
        ``{"messages": [...], "question_id": str}``: the system turn (when the prompt config has
        one), the user turn and the assistant turn holding every step, ``Step 0: ...`` first.

    Raises:
        ValueError: a record with no steps or an empty step.
    """
    question = MedQuestion.from_dict(record["question"])
    response, _ = render_trajectory(record["steps"], prompt)
    messages = chat_messages(question, prompt) + [{"role": "assistant", "content": response}]
    return {"messages": messages, "question_id": record["question_id"]}


def sft_export(trees: Iterable[Tree], config: SFTDataConfig | None = None,
               prompt: PromptConfig | None = None) -> list[dict[str, Any]]:
    """Chat-messages records for every trajectory the policy trainer selects from ``trees``,
    in its order (question by question, node order within a question)."""
    return [sft_messages(r, prompt) for r in sft_records(trees, config, prompt)]
