"""Rollout jobs: the local and Ray runners and the crash-safe tree store."""

from meds3.rollout.ray_config import RayConfig
from meds3.rollout.ray_runner import run_ray_rollout
from meds3.rollout.runner import RolloutConfig, load_seed_questions, run_rollout, summarize
from meds3.rollout.store import TreeStore

__all__ = ["RayConfig", "RolloutConfig", "TreeStore", "load_seed_questions", "run_ray_rollout", "run_rollout",
           "summarize"]
