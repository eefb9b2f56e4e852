"""The Ray rollout runner: work units of seed questions, one engine per actor, one writer.

The driver splits the questions still missing from the tree store into work units of
``ray.unit_size`` questions and keeps ``ray.units_in_flight`` of them queued on each
:class:`RolloutWorker` actor (dynamic scheduling: a fast actor comes back sooner and is
given more). An actor owns one engine and runs the forest search on a unit; it returns the
unit's trees as plain dicts and the driver, the store's only writer, writes them as one
atomic shard. So no two processes ever write shards, a unit is stored whole or not at all,
and the store's ``done_ids`` on a rerun is exact: a killed driver loses only the units in
flight, which the rerun searches again, and nothing is written twice. The store is the same
as the local runner's, so the two runners' outputs are interchangeable.

Faults: an actor that dies (killed, out of memory, node lost) fails the units queued on it;
the one it was running is charged a retry, the others go back to the queue uncharged (an
actor runs its calls in order), and a new actor replaces the dead one. A unit that fails more
than ``ray.max_unit_retries`` times is recorded in ``failed_units.json`` with its reasons and
the job finishes the rest; its questions stay unsearched, so a rerun tries them again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from meds3.data.question import MedQuestion
from meds3.mcts.node import Tree
from meds3.rollout.ray_worker import EngineFactory, RolloutWorker
from meds3.rollout.runner import RolloutConfig, close_job, open_job

logger = logging.getLogger(__name__)

_FETCH_TIMEOUT_S = 60.0  # wait for a finished unit's result from an actor that died afterwards


@dataclass
class Unit:
    """A work unit: questions searched together by one actor."""

    id: int
    questions: list[MedQuestion]
    attempts: int = 0  # failed attempts so far
    errors: list[str] = field(default_factory=list)


@dataclass
class WorkerState:
    """The driver's view of one actor."""

    id: int
    handle: Any
    inflight: deque = field(default_factory=deque)  # (ref, unit), oldest (running) first
    ready: bool = False  # engine built; only ready actors are given units
    alive: bool = True
    host: str = ""
    died: str = ""
    units: int = 0
    trees: int = 0
    nodes: int = 0
    generated_tokens: int = 0
    busy_s: float = 0.0
    first_start: float = float("inf")  # actor clock: first unit started
    last_end: float = 0.0  # actor clock: last unit ended

    def throughput(self) -> dict[str, Any]:
        """Units, trees, tokens; rates over busy time; ``utilization``: busy share of the span
        from its first unit's start to its last unit's end (below 1: it waited for the driver)."""
        busy = max(self.busy_s, 1e-9)
        span = max(self.last_end - self.first_start, busy)
        return {"worker": self.id, "host": self.host, "alive": self.alive, "died": self.died, "units": self.units,
                "trees": self.trees, "nodes": self.nodes, "generated_tokens": self.generated_tokens,
                "busy_s": round(self.busy_s, 2), "trees_per_s": round(self.trees / busy, 4),
                "tokens_per_s": round(self.generated_tokens / busy, 1),
                "utilization": round(self.busy_s / span, 3) if self.units else 0.0}


def make_units(questions: list[MedQuestion], unit_size: int) -> list[Unit]:
    """Consecutive chunks of ``unit_size`` questions, numbered from 0."""
    return [Unit(i, questions[s:s + unit_size]) for i, s in enumerate(range(0, len(questions), unit_size))]


def connect(config: RolloutConfig) -> bool:
    """Start or join Ray unless already connected; True if this call connected (and should shut down).

    ``ray.address`` None starts a local instance unless ``RAY_ADDRESS`` is set, which Ray
    then joins; ``"auto"`` joins the cluster this machine belongs to.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": config.ray.address, "log_to_driver": True}
    if config.ray.runtime_env:
        kwargs["runtime_env"] = config.ray.runtime_env
    if config.ray.address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    return True


class RayRolloutJob:
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
        self.config = config
        self.engine_factory = engine_factory
        self.progress = progress
        self.on_unit_done = on_unit_done
        self.workers: dict[int, WorkerState] = {}
        self.pending: deque[Unit] = deque()
        self.failed_units: list[dict[str, Any]] = []
        self.retries = 0
        self.replacements_left = config.ray.replacements
        self.generated_tokens = 0
        self.trees_done = 0
        self.driver_store_s = 0.0  # the single writer's time per stored unit bounds a cluster's throughput
        self._next_worker = 0
        self._owner: dict[Any, WorkerState] = {}  # unit result ref -> actor
        self._starting: dict[Any, WorkerState] = {}  # readiness ref -> actor
        self._any_ready = False
        self._shipment = None  # ObjectRef of the packed adapter and PRM

    # -- actors ---------------------------------------------------------------------------
    def start_worker(self) -> WorkerState:
        """Create one actor with the job's resources (it loads its engine asynchronously)."""
        import ray

        r = self.config.ray
        actor_cls = ray.remote(RolloutWorker).options(num_cpus=r.num_cpus_per_worker, num_gpus=r.num_gpus_per_worker,
                                                      max_restarts=0, max_task_retries=0)
        wid = self._next_worker
        self._next_worker += 1
        if self._shipment is None:  # packed once per job, shared by every actor through the object store
            from meds3.rollout.shipping import Shipment

            self._shipment = ray.put(Shipment.for_config(self.config))
        state = WorkerState(wid, actor_cls.remote(wid, self.config, self.engine_factory, self._shipment))
        self.workers[wid] = state
        self._starting[state.handle.info.remote()] = state
        return state

    def alive(self) -> list[WorkerState]:
        return [w for w in self.workers.values() if w.alive]

    def _check_resources(self) -> None:
        import ray

        r = self.config.ray
        if r.unit_size < self.config.live_trees:
            logger.warning("ray.unit_size %d < live_trees %d: each actor searches fewer trees at once than a "
                           "local run would", r.unit_size, self.config.live_trees)
        have = ray.cluster_resources()
        for name, per in (("CPU", r.num_cpus_per_worker), ("GPU", r.num_gpus_per_worker)):
            if per and have.get(name, 0) < per * r.num_workers:
                logger.warning("the cluster has %s %s for %d workers x %s: some actors will wait for resources",
                               have.get(name, 0), name, r.num_workers, per)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Search every question not yet stored; returns the summary (also in ``summary.json``)."""
        import ray
        from tqdm.auto import tqdm

        out, store, todo = open_job(self.config)
        started = self._started = time.perf_counter()
        self.pending = deque(make_units(todo, self.config.ray.unit_size))
        self._written = store.done_ids()
        self._bar = tqdm(total=len(todo), desc="trees", unit="tree", disable=not self.progress, dynamic_ncols=True)
        try:
            if self.pending:
                self._check_resources()
                for _ in range(min(self.config.ray.num_workers, len(self.pending))):
                    self.start_worker()
                self._loop(store)
        finally:
            store.flush()
            self._bar.close()
            for w in self.workers.values():
                ray.kill(w.handle)  # actors die with the driver anyway; here they free their resources now
        elapsed = time.perf_counter() - started
        failed_path = out / "failed_units.json"
        failed_path.write_text(json.dumps(self.failed_units, indent=2) + "\n", encoding="utf-8")
        if self.failed_units:
            logger.warning("%d unit(s) failed after %d attempts; see %s (a rerun tries them again)",
                           len(self.failed_units), self.config.ray.max_unit_retries + 1, failed_path)
        extra = {"ray": {"workers": len(self.workers), "unit_size": self.config.ray.unit_size,
                         "seconds": round(elapsed, 2), "trees_searched": self.trees_done,
                         "trees_per_s": round(self.trees_done / max(elapsed, 1e-9), 4),
                         "tokens_per_s": round(self.generated_tokens / max(elapsed, 1e-9), 1),
                         "driver_store_s": round(self.driver_store_s, 3),
                         "retries": self.retries, "failed_units": self.failed_units,
                         "per_worker": [w.throughput() for w in self.workers.values()]}}
        return close_job(out, store, extra)

    def _loop(self, store) -> None:
        import ray

        while self.pending or self._owner:
            self._submit()
            if not self._owner and not self._starting:
                for unit in self.pending:
                    self._fail(unit, "no live workers and no replacements left")
                self.pending.clear()
                continue
            ready, _ = ray.wait([*self._owner, *self._starting], num_returns=1)
            ref = ready[0]
            if ref in self._starting:
                self._worker_started(store, self._starting.pop(ref), ref)
                continue
            worker = self._owner.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._worker_died(store, worker, ref, exc)
                continue
            except ray.exceptions.RayError as exc:  # the unit raised inside a live actor
                unit = self._pop_inflight(worker, ref)
                self._charge(unit, f"worker {worker.id}: {_reason(exc)}")
                continue
            unit = self._pop_inflight(worker, ref)
            self._store_unit(store, worker, unit, result)

    def _worker_started(self, store, worker: WorkerState, ref) -> None:
        """An actor built its engine (or failed to: then it is dead, and if no actor ever
        started the job stops, since the engine cannot be built)."""
        import ray

        try:
            worker.host = ray.get(ref)["host"]
        except ray.exceptions.RayError as exc:
            if self._any_ready:  # others built the same engine: this actor was unlucky, replace it
                self._worker_died(store, worker, ref, exc)
                return
            worker.alive, worker.died = False, _reason(exc)  # likely a bad model or engine option
            logger.error("worker %d could not start: %s", worker.id, worker.died)
            if not self.alive():
                raise RuntimeError(f"no rollout worker could start: {worker.died}") from exc
            return
        worker.ready = self._any_ready = True
        logger.info("worker %d ready on %s", worker.id, worker.host)

    def _submit(self) -> None:
        """Keep up to ``units_in_flight`` units queued on every ready actor: breadth first (each
        gets a first unit before any gets a second), and a queued second unit only while the
        pending units outnumber the actors still starting, so none of those is left idle."""
        ready = [w for w in self.alive() if w.ready]
        starting = len(self.alive()) - len(ready)
        for depth in range(1, self.config.ray.units_in_flight + 1):
            for w in sorted(ready, key=lambda w: len(w.inflight)):
                if self.pending and len(w.inflight) < depth and (depth == 1 or len(self.pending) > starting):
                    unit = self.pending.popleft()
                    ref = w.handle.run_unit.remote(unit.id, [q.to_dict() for q in unit.questions])
                    w.inflight.append((ref, unit))
                    self._owner[ref] = w

    def _pop_inflight(self, worker: WorkerState, ref) -> Unit:
        for i, (r, unit) in enumerate(worker.inflight):
            if r == ref:
                del worker.inflight[i]
                return unit
        raise RuntimeError(f"unit of {ref} not found on worker {worker.id}")

    def _store_unit(self, store, worker: WorkerState, unit: Unit, result: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        trees = [Tree.from_dict(d) for d in result["trees"]]
        for tree in trees:
            if tree.question.id in self._written:  # a unit returns once, so this only guards against bugs
                logger.warning("tree for %r already stored; skipped", tree.question.id)
                continue
            store.add(tree)
            self._written.add(tree.question.id)
        store.flush()  # one atomic shard per unit: stored whole or not at all
        self.driver_store_s += time.perf_counter() - t0
        worker.units += 1
        worker.trees += len(trees)
        worker.nodes += result["nodes"]
        worker.generated_tokens += result["generated_tokens"]
        worker.busy_s += result["seconds"]
        worker.first_start = min(worker.first_start, result["started_at"])
        worker.last_end = max(worker.last_end, result["ended_at"])
        self.trees_done += len(trees)
        self.generated_tokens += result["generated_tokens"]
        self._bar.update(len(trees))
        self._show()
        if self.on_unit_done is not None:
            self.on_unit_done(self, result)

    def _worker_died(self, store, worker: WorkerState, ref, exc: Exception) -> None:
        """Requeue the dead actor's units (charging the one it was running) and replace it."""
        import ray

        reason = f"worker {worker.id} died: {_reason(exc)}"
        if worker.alive:
            worker.alive, worker.died = False, _reason(exc)
            logger.warning("%s", reason)
        for r, w in list(self._starting.items()):
            if w is worker:
                del self._starting[r]
        lost: list[Unit] = []
        for r, unit in list(worker.inflight):
            self._owner.pop(r, None)
            try:  # a unit the actor finished before it died is stored, not searched again; large
                # results sit in the object store, so wait for them (the others fail at once)
                result = ray.get(r, timeout=_FETCH_TIMEOUT_S) if r != ref else None
            except (ray.exceptions.RayError, TimeoutError):
                result = None
            if result is None:
                lost.append(unit)
            else:
                self._store_unit(store, worker, unit, result)
        worker.inflight.clear()
        # The actor runs its calls in order: the first lost unit was running, the rest only queued.
        for unit in reversed(lost[1:]):
            self.pending.appendleft(unit)
        if lost:
            self._charge(lost[0], reason)
        if self.pending and self.replacements_left > 0:
            self.replacements_left -= 1
            new = self.start_worker()
            logger.info("started worker %d to replace worker %d (%d replacements left)", new.id, worker.id,
                        self.replacements_left)
        self._show()

    def _charge(self, unit: Unit, reason: str) -> None:
        """A failed attempt: requeue the unit, or record it failed past the retry limit."""
        unit.attempts += 1
        unit.errors.append(reason)
        if unit.attempts > self.config.ray.max_unit_retries:
            self._fail(unit, reason)
        else:
            self.retries += 1
            self.pending.appendleft(unit)

    def _fail(self, unit: Unit, reason: str) -> None:
        self.failed_units.append({"unit": unit.id, "question_ids": [q.id for q in unit.questions],
                                  "attempts": unit.attempts, "reason": reason, "errors": unit.errors})

    def _show(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._bar.set_postfix(trees_s=f"{self.trees_done / elapsed:.3f}",
                              tok_s=f"{self.generated_tokens / elapsed:.1f}",
                              workers=len(self.alive()), retries=self.retries, failed=len(self.failed_units),
                              refresh=False)


def _reason(exc: BaseException) -> str:
    """An error in one line for summaries: its first line and, where Ray wraps a traceback,
    the traceback's last line (the original error)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).strip().splitlines()]
    lines = [line for line in lines if line]
    text = lines[0][:200] if lines else ""
    if len(lines) > 1 and re.match(r"[\w.]+(Error|Exception|Interrupt|Exit)\b", lines[-1]):
        text += f" ... {lines[-1][:200]}"
    return f"{type(exc).__name__}: {text}"


def run_ray_rollout(config: RolloutConfig, progress: bool = True, engine_factory: Optional[EngineFactory] = None,
                    on_unit_done: Optional[Callable[[RayRolloutJob, dict], None]] = None) -> dict[str, Any]:
    """Run a rollout job on Ray actors; resumable, with the same store and summary as the local runner.

    Connects to Ray as ``config.ray.address`` says unless already connected (then the
    connection is reused and left open).

    Args:
        config: the job.
        progress: show a progress bar.
        engine_factory: ``factory(config) -> engine`` run in each actor (default: ``build_engine``).
        on_unit_done: ``hook(job, result)`` after each stored unit.

    Returns:
        :func:`meds3.rollout.summarize` of every stored tree, plus ``ray``: seconds, trees/s,
        tokens/s, retries, ``failed_units`` and ``per_worker`` throughput.
    """
    import ray

    connected = connect(config)
    try:
        return RayRolloutJob(config, engine_factory, progress, on_unit_done).run()
    finally:
        if connected:
            ray.shutdown()
