"""The Ray rollout actor: one engine, the forest search on the work units it is given."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from meds3.data.question import MedQuestion
from meds3.mcts.forest import EngineFailure
from meds3.rollout.ray_units import EngineActor, default_engine_factory
from meds3.rollout.runner import RolloutConfig, build_forest, build_value_model
from meds3.rollout.shipping import Shipment

EngineFactory = Callable[[RolloutConfig], Any]


__all__ = ["EngineFactory", "RolloutWorker", "default_engine_factory"]


class RolloutWorker(EngineActor):
    """A Ray actor body: one engine, the forest search on the units it is given.

    Args:
        worker_id: the driver's number for this actor (shown in summaries).
        config: the job (its ``search``, ``prompt``, ``live_trees`` and ``adapter`` are used).
        engine_factory: ``factory(config) -> engine`` (default :func:`default_engine_factory`).
    """

    def __init__(self, worker_id: int, config: RolloutConfig, engine_factory: Optional[EngineFactory] = None,
                 shipment: Optional[Shipment] = None):
        # The adapter and PRM arrive through Ray's object store: no path of the driver's is read.
        super().__init__(worker_id, config, engine_factory, shipment)
        self.value_model = build_value_model(self.config)  # PRM prior: the actor scores its own steps
        self.broken = ""  # the EngineFailure that ended this actor's engine ("" while it works)

    def run_unit(self, unit_id: int, questions: list[dict[str, Any]]) -> dict[str, Any]:
        """Search one unit's questions; returns their trees (as dicts) and the unit's counts.

        Raises:
            EngineFailure: the engine failed persistently or fatally (in this unit or an
                earlier one: a broken actor fails every later unit at once, without using
                its engine); the unit returns no tree, so the driver retries it elsewhere.
        """
        if self.broken:
            raise EngineFailure(f"worker {self.worker_id}: engine broken in an earlier unit: {self.broken}")
        c = self.config
        forest = build_forest(c, self.engine, self.value_model)
        started_at, start = time.time(), time.perf_counter()
        trees = []
        try:
            for tree in forest.run(MedQuestion.from_dict(q) for q in questions):
                tree.adapter_sha256 = self.adapter_sha256
                trees.append(tree.to_dict())
        except EngineFailure as exc:
            self.broken = str(exc)
            raise EngineFailure(f"worker {self.worker_id}, unit {unit_id}: {exc}") from exc
        s = forest.stats
        return {"unit": unit_id, "worker": self.worker_id, "trees": trees, "seconds": time.perf_counter() - start,
                "started_at": started_at, "ended_at": time.time(),  # the actor's clock
                "generated_tokens": s.generated_tokens, "nodes": s.nodes, "engine_retries": s.retries}
