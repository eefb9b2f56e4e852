"""The Ray rollout actor: one engine, the forest search on the work units it is given.

With the async schedule (the default) the actor is a stream, not a unit-at-a-time worker: one
forest runs for the actor's life on a :class:`~meds3.mcts.forest.Feed`, every unit the driver
sends (it keeps ``ray.units_in_flight`` queued per actor) tops the feed up, and each unit call
returns once its own trees are done. So the forest never drains at a unit's end: the next
unit's questions take the slots as they free. Units stay the driver's bookkeeping (stored
whole, retried, split): the exactly-once guarantees of :mod:`meds3.rollout.ray_units` hold.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from meds3.data.question import MedQuestion
from meds3.mcts.forest import EngineFailure, Feed
from meds3.rollout.ray_units import EngineActor, default_engine_factory
from meds3.rollout.runner import RolloutConfig, build_forest, build_value_model, forest_schedule
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
        self._stream_lock = threading.Lock()

    def run_unit(self, unit_id: int, questions: list[dict[str, Any]]) -> dict[str, Any]:
        """Search one unit's questions; returns their trees (as dicts) and the unit's counts.

        Raises:
            EngineFailure: the engine failed persistently or fatally (in this unit or an
                earlier one: a broken actor fails every later unit at once, without using
                its engine); the unit returns no tree, so the driver retries it elsewhere.
        """
        if self.broken:
            raise EngineFailure(f"worker {self.worker_id}: engine broken in an earlier unit: {self.broken}")
        if forest_schedule(self.config) == "async":
            return self._stream_unit(unit_id, questions)
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

    # -- the stream --------------------------------------------------------------------------
    def _stream_unit(self, unit_id: int, questions: list[dict[str, Any]]) -> dict[str, Any]:
        """Add the unit's questions to the actor's running forest; wait for their trees."""
        stream = self._ensure_stream()
        started_at, start = time.time(), time.perf_counter()
        unit = _UnitWait([MedQuestion.from_dict(q) for q in questions])
        with stream.lock:
            if stream.error is not None:
                raise self._unit_failure(unit_id, stream.error)
            for q in unit.questions:
                stream.owner[id(q)] = unit
            retries_before = stream.forest.stats.retries
        stream.feed.put(unit.questions)
        unit.done.wait()
        if unit.error is not None:
            raise self._unit_failure(unit_id, unit.error)
        ended = time.perf_counter()
        with stream.lock:  # busy time: this unit's share of the actor's span (units overlap)
            seconds = ended - max(start, stream.last_end)
            stream.last_end = max(stream.last_end, ended)
        trees = [unit.trees[id(q)] for q in unit.questions]
        return {"unit": unit_id, "worker": self.worker_id, "trees": trees, "seconds": max(seconds, 0.0),
                "started_at": started_at, "ended_at": time.time(),
                "generated_tokens": unit.tokens, "nodes": sum(len(t["nodes"]) for t in trees),
                "engine_retries": stream.forest.stats.retries - retries_before}

    def _unit_failure(self, unit_id: int, error: BaseException) -> BaseException:
        if isinstance(error, EngineFailure):
            self.broken = self.broken or str(error)
            return EngineFailure(f"worker {self.worker_id}, unit {unit_id}: {error}")
        return RuntimeError(f"worker {self.worker_id}, unit {unit_id}: the forest stopped: "
                            f"{type(error).__name__}: {error}")

    def _ensure_stream(self) -> "_Stream":
        with self._stream_lock:
            if self._stream is None:
                self._stream = _Stream(build_forest(self.config, self.engine, self.value_model), self.adapter_sha256)
            return self._stream

    _stream: Optional["_Stream"] = None


class _UnitWait:
    """One unit's questions while the actor's forest searches them."""

    def __init__(self, questions: list[MedQuestion]):
        self.questions = questions
        self.trees: dict[int, dict[str, Any]] = {}
        self.tokens = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        if not questions:
            self.done.set()


class _Stream:
    """The actor's forest, run by one thread over a feed for the actor's life; finished trees
    are routed to the unit that asked for them. A forest error (EngineFailure) ends the stream
    and fails every waiting unit, and every later one."""

    def __init__(self, forest, adapter_sha256: str):
        self.forest, self.adapter_sha256 = forest, adapter_sha256
        self.feed = Feed()
        self.lock = threading.Lock()
        self.owner: dict[int, _UnitWait] = {}  # id(question) -> its unit
        self.error: BaseException | None = None
        self.last_end = 0.0
        self.thread = threading.Thread(target=self._run, name="meds3-forest", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for tree in self.forest.run(self.feed):
                tree.adapter_sha256 = self.adapter_sha256
                with self.lock:
                    unit = self.owner.pop(id(tree.question))
                unit.trees[id(tree.question)] = tree.to_dict()
                unit.tokens += self.forest.last_tree_tokens
                if len(unit.trees) == len(unit.questions):
                    unit.done.set()
        except BaseException as exc:  # noqa: BLE001 -- handed to every unit waiting on this forest
            with self.lock:
                self.error = exc
                waiting = set(self.owner.values())
                self.owner.clear()
            for unit in waiting:
                unit.error = exc
                unit.done.set()
