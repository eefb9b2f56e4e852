"""The search config: every MedS3 constant, defaulting to the paper's value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class SearchConfig:
    """MCTS over reasoning steps (MedS3 §3; docs/method.md, Search). Defaults are the paper's values
    unless the comment says otherwise."""

    exploration_constant: float = 2.0  # C in V(c) + C*sqrt(ln N(parent) / N(c))
    unvisited_score: float = 5.0  # UCT score of a child never visited
    pruned_score: float = -1.0  # UCT score of a completed child (pruned)
    expansion_width: int = 3  # children per expansion
    finish_children: int = 1  # of those, Finish actions below the root (MedS3 lets the model choose; we fix it)
    bear_ratio: float = 0.9  # a node whose rollout value reaches this expands with one Finish child (MedS3 code)
    max_nodes: int = 60  # stop a tree at this many nodes (root included)
    target_correct_leaves: int = 4  # stop after this many correct Finish leaves
    force_finish_max_correct: int = 3  # at the end, with at most this many correct leaves, finish every open leaf
    rollout_budget: int = 20  # k = max(rollout_budget // (depth + 1), min_rollouts)
    min_rollouts: int = 5
    backup_rule: Literal["comp", "mean"] = "comp"  # comp: V_p <- (V_p + sum V_c N_c / sum N_c) / 2
    temperature: float = 0.8  # MedS3 samples at T 0.6-1.0; the default of every phase below left unset
    top_p: float = 0.9
    expansion_temperature: Optional[float] = None  # Reason/Finish/Reflect/Think samples (MedS3 code: 1.0)
    expansion_top_p: Optional[float] = None  # (MedS3 code: 0.95)
    rollout_temperature: Optional[float] = None  # rollouts (MedS3 code: 0.6 in iteration 1, 1.0 later)
    rollout_top_p: Optional[float] = None  # (MedS3 code: 0.9)
    simulation: Literal["continue", "direct"] = "continue"  # rollout prompt: continue the steps, or MedS3's
    # direct-answer prompt (the steps in the user turn, "generate the final answer"; its iteration 1)
    action_policy: Literal["fixed", "model"] = "fixed"  # fixed: finish_children Finish per expansion;
    # model: the policy picks Reason or Finish for each child (MedS3's Think action)
    refine_limit: int = 0  # Reflect children along a path (MedS3 trial5: 1; 0: no Reflect)
    low_gate: float = 0.5  # a Finish valued below this gets a Reflect child while refine_limit allows
    reflect_text: str = "But wait, "  # how a Reflect step starts (MedS3's trigger word)
    prm_prior_weight: float = 0.0  # w: a Reason node's value = (1 - w) rollout + w PRM score (0: off; 1: no rollouts)
    finish_value: Literal["rule", "prm"] = "rule"  # rule: a Finish is worth its 0/1 check (training);
    # prm: its PRM score, and no rule check steers the search (PRM-guided MCTS at test time)
    max_step_tokens: int = 256  # a Reason step (not in the paper)
    max_finish_tokens: int = 512  # a Finish step runs to EOS (not in the paper)
    max_rollout_tokens: int = 1024  # a rollout completion (not in the paper)
    max_depth: int = 12  # below this depth only Finish actions (a guard; not in the paper)
    split_finish: bool = True  # a multi-step Finish output becomes a chain of nodes (MedS3 code, tree.py)
    count_truncated: bool = False  # True: a Finish or rollout cut at its token cap is verified like any output
    seed: int = 0  # request seeds derive from (seed, question id, node id): batch-independent

    def __post_init__(self) -> None:
        from meds3.config import check_finite

        check_finite(self)  # NaN passes every comparison below
        if self.exploration_constant < 0:
            raise ValueError(f"exploration_constant must be >= 0, got {self.exploration_constant}")
        if self.expansion_width < 1:
            raise ValueError(f"expansion_width must be >= 1, got {self.expansion_width}")
        if not 0 <= self.finish_children <= self.expansion_width:
            raise ValueError(f"finish_children must be in [0, expansion_width], got {self.finish_children}")
        if self.max_nodes < 2:
            raise ValueError(f"max_nodes must be >= 2, got {self.max_nodes}")
        if self.rollout_budget < 1 or self.min_rollouts < 1:
            raise ValueError("rollout_budget and min_rollouts must be >= 1")
        if not 0 <= self.bear_ratio <= 1:
            raise ValueError(f"bear_ratio must be in [0, 1], got {self.bear_ratio}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("expansion_temperature", "rollout_temperature"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be >= 0 or null, got {value}")
        for name in ("expansion_top_p", "rollout_top_p"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1] or null, got {value}")
        if self.refine_limit < 0:
            raise ValueError(f"refine_limit must be >= 0, got {self.refine_limit}")
        if not 0 <= self.low_gate <= 1:
            raise ValueError(f"low_gate must be in [0, 1], got {self.low_gate}")
        if not 0 <= self.prm_prior_weight <= 1:
            raise ValueError(f"prm_prior_weight must be in [0, 1], got {self.prm_prior_weight}")
        if self.finish_value == "prm" and self.prm_prior_weight != 1:
            raise ValueError("finish_value 'prm' (test-time search) needs prm_prior_weight 1: no rule-checked rollouts")
        for name in ("max_step_tokens", "max_finish_tokens", "max_rollout_tokens", "max_depth",
                     "target_correct_leaves"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def sampling(self, phase: str) -> tuple[float, float]:
        """``(temperature, top_p)`` of a phase: ``"rollout"`` or ``"expansion"`` (every other request)."""
        if phase == "rollout":
            t, p = self.rollout_temperature, self.rollout_top_p
        else:
            t, p = self.expansion_temperature, self.expansion_top_p
        return (self.temperature if t is None else t), (self.top_p if p is None else p)

    def rollouts_at(self, depth: int) -> int:
        """Rollouts for a node at ``depth``: ``max(rollout_budget // (depth + 1), min_rollouts)``."""
        return max(self.rollout_budget // (depth + 1), self.min_rollouts)
