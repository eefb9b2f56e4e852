"""Exports of search trees in the formats other training tools read (``meds3 export``).

- :mod:`meds3.export.sft`: chat-messages SFT records (``{"messages": [...]}``).
- :mod:`meds3.export.prm`: TRL stepwise supervision (``prompt``, ``completions``, ``labels``).
- :mod:`meds3.export.dpo`: TRL conversational preference pairs (``prompt``, ``chosen``, ``rejected``).
- :mod:`meds3.export.trl_scorer`: ``TRLPRMScorer``, scoring with a PRM trained by TRL on the PRM export.

Every record also carries its ``question_id``.
"""

from meds3.export.dpo import DEFAULT_MAX_PAIRS, check_dpo_options, dpo_export, preference_pairs, shared_steps
from meds3.export.prm import (
    DEFAULT_THRESHOLD,
    hard_labels,
    prm_export,
    stepwise_completions,
    stepwise_prompt,
    stepwise_record,
    stepwise_tokens,
)
from meds3.export.sft import sft_export, sft_messages

FORMATS = ("sft", "prm", "dpo")

__all__ = [
    "DEFAULT_MAX_PAIRS", "DEFAULT_THRESHOLD", "FORMATS", "TRLPRMScorer", "check_dpo_options", "dpo_export",
    "hard_labels", "preference_pairs", "prm_export", "sft_export", "sft_messages", "shared_steps",
    "stepwise_completions", "stepwise_prompt", "stepwise_record", "stepwise_tokens",
]


def __getattr__(name: str):
    if name == "TRLPRMScorer":  # why: lazily, so exporting never imports the scorer's torch stack
        from meds3.export.trl_scorer import TRLPRMScorer

        return TRLPRMScorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
