"""Rollout jobs: the local runner and the crash-safe tree store."""

from meds3.rollout.runner import RolloutConfig, load_seed_questions, run_rollout, summarize
from meds3.rollout.store import TreeStore

__all__ = ["RolloutConfig", "TreeStore", "load_seed_questions", "run_rollout", "summarize"]
