"""The Ray rollout runner: work units of seed questions, one engine per actor, one writer.

The driver splits the questions still missing from the tree store into work units of
``ray.unit_size`` questions and schedules them on :class:`RolloutWorker` actors with the
scheduler shared with evaluation (:class:`meds3.rollout.ray_units.RayUnitJob`: dynamic
scheduling, retries, replacements, engines closed at the end). An actor owns one engine and
runs the forest search on a unit; it returns the unit's trees as plain dicts and the driver,
the store's only writer, writes them as one atomic shard. So a unit is stored whole or not at
all, and the store's ``done_ids`` on a rerun is exact: a killed driver loses only the units in
flight, which the rerun searches again, and nothing is written twice. The store is the same as
the local runner's, so the two runners' outputs are interchangeable.

A unit that fails more than ``ray.max_unit_retries`` times is split in halves down to the
question that makes it fail, which is recorded in ``failed_units.json`` with its reasons; the
job finishes the rest; failed questions stay unsearched, so a rerun tries them again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from meds3.data.question import MedQuestion
from meds3.io import atomic_write_json
from meds3.locks import locks_output
from meds3.mcts.node import Tree
from meds3.results import RolloutResult
from meds3.rollout.ray_units import RayUnitJob, Unit, WorkerState, connect
from meds3.rollout.ray_worker import EngineFactory, RolloutWorker
from meds3.rollout.runner import RolloutConfig, close_job, forest_schedule, open_job

logger = logging.getLogger(__name__)

__all__ = ["RayRolloutJob", "Unit", "WorkerState", "connect", "make_units", "run_ray_rollout"]


def make_units(questions: list[MedQuestion], unit_size: int) -> list[Unit]:
    """Consecutive chunks of ``unit_size`` questions, numbered from 0."""
    return [Unit(i, questions[s:s + unit_size]) for i, s in enumerate(range(0, len(questions), unit_size))]


class RayRolloutJob(RayUnitJob):
    """One run of a rollout job on Ray; see the module docstring.

    Args:
        config: the job (``config.ray`` says how many actors and what each reserves).
        engine_factory: how an actor builds its engine (default: ``build_engine`` from the
            config, :func:`meds3.rollout.ray_worker.default_engine_factory`); must be picklable
            (Ray ships it to the actors).
        progress: show a progress bar.
        on_unit_done: called as ``on_unit_done(job, result)`` after each unit is stored (a hook
            for monitoring and fault-injection tests).
    """

    def __init__(self, config: RolloutConfig, engine_factory: Optional[EngineFactory] = None,
                 progress: bool = True, on_unit_done: Optional[Callable[["RayRolloutJob", dict], None]] = None):
        super().__init__(config, engine_factory, progress, on_unit_done, item="trees", name="rollout")
        self._store = None
        self._written: set[str] = set()

    def actor_class(self) -> type:
        return RolloutWorker

    def actor_concurrency(self) -> int:
        # async: the actor's forest runs every queued unit at once (ray_worker.py); +2 for info/close
        return self.ray_config.units_in_flight + 2 if forest_schedule(self.config) == "async" else 1

    def shipment(self):
        from meds3.rollout.shipping import Shipment

        return Shipment.for_config(self.config)  # the adapter, and the PRM of the prior

    def unit_args(self, unit: Unit) -> tuple:
        return unit.id, [q.to_dict() for q in unit.questions]

    def check_resources(self) -> None:
        if self.ray_config.unit_size < self.config.live_trees:
            logger.warning("ray.unit_size %d < live_trees %d: each actor searches fewer trees at once than a "
                           "local run would", self.ray_config.unit_size, self.config.live_trees)
        super().check_resources()

    def store_result(self, unit: Unit, result: dict[str, Any]) -> int:
        trees = [Tree.from_dict(d) for d in result["trees"]]
        for tree in trees:
            if tree.question.id in self._written:  # a unit returns once, so this only guards against bugs
                logger.warning("tree for %r already stored; skipped", tree.question.id)
                continue
            self._store.add(tree)
            self._written.add(tree.question.id)
        self._store.flush()  # one atomic shard per unit: stored whole or not at all
        return len(trees)

    def unit_counts(self, result: dict[str, Any]) -> dict[str, int]:
        return {"nodes": result["nodes"]}

    @property
    def trees_done(self) -> int:
        return self.items_done

    def run(self, force: bool = False) -> RolloutResult:
        """Search every question not yet stored; returns the result (also in ``summary.json``).
        ``force``: a store searched with other settings is moved aside (:func:`open_job`)."""
        out, store, todo = open_job(self.config, force)
        started = time.perf_counter()
        self._store, self._written = store, store.done_ids()
        try:
            self.run_units(make_units(todo, self.ray_config.unit_size))
        except BaseException:
            try:  # keep what is stored, but never let this hide the error that stopped the job
                store.flush()
            except Exception as exc:  # noqa: BLE001
                logger.error("could not flush the tree store after an error: %s", exc)
            raise
        store.flush()
        elapsed = time.perf_counter() - started
        failed_path = out / "failed_units.json"
        atomic_write_json(failed_path, self.failed_units)
        if self.failed_units:
            logger.warning("%d unit(s) failed after %d attempts; see %s (a rerun tries them again)",
                           len(self.failed_units), self.ray_config.max_unit_retries + 1, failed_path)
        ray_summary = self.summary(elapsed)
        ray_summary["trees_searched"] = ray_summary.pop("trees_done")
        return close_job(out, store, {"ray": ray_summary})


@locks_output("rollout")
def run_ray_rollout(config: RolloutConfig, progress: bool = True, engine_factory: Optional[EngineFactory] = None,
                    on_unit_done: Optional[Callable[[RayRolloutJob, dict], None]] = None,
                    force: bool = False) -> RolloutResult:
    """Run a rollout job on Ray actors; resumable, with the same store and result as the local runner.

    Connects to Ray as ``config.ray.address`` says unless already connected (then the
    connection is reused and left open).

    Args:
        config: the job.
        progress: show a progress bar.
        engine_factory: ``factory(config) -> engine`` run in each actor (default: ``build_engine``).
        on_unit_done: ``hook(job, result)`` after each stored unit.
        force: trees searched with other settings are moved aside and the job starts afresh,
            instead of being refused.

    Returns:
        The :class:`~meds3.results.RolloutResult` of every stored tree; its ``details["ray"]``: seconds, trees/s,
        tokens/s, retries, ``failed_units``, ``closed_workers`` and ``per_worker`` throughput.
    """
    from meds3.rollout.ray_config import require_ray

    ray = require_ray()  # an optional extra: a clear install hint instead of an ImportError
    connected = connect(config.ray)
    try:
        return RayRolloutJob(config, engine_factory, progress, on_unit_done).run(force)
    finally:
        if connected:
            ray.shutdown()
