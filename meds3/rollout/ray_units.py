"""Work units on Ray actors with one writer: the scheduler shared by rollouts and evaluation.

The driver keeps ``ray.units_in_flight`` units queued on every actor that has built its engine
(dynamic scheduling: a fast actor comes back sooner and is given more). An actor runs a unit
and returns its output as plain data; the driver, the only writer of the job's files, stores
it whole (:meth:`RayUnitJob.store_result`). So no two processes ever write the same file, a
unit is stored whole or not at all, and a rerun does exactly the units whose output is
missing: a killed driver loses only the units in flight.

Faults: an actor that dies (killed, out of memory, node lost) fails the units queued on it;
the one it was running is charged a retry, the others go back to the queue uncharged (an
actor runs its calls in order), and a new actor replaces the dead one. A unit that runs past
``ray.unit_timeout_s`` (a hung engine) is charged the same way and its actor is killed and
replaced, and so is an actor whose engine fails for good (``EngineFailure``: a lost CUDA
context, a dead vLLM engine), its unit charged. A unit that fails more than
``ray.max_unit_retries`` times is split in two halves,
each given one more attempt, and so on down to single questions, so one poison question
costs only itself: it is recorded as failed with its reasons and the job finishes the rest; a
rerun tries it again. Actors that fail to start before any has started are replaced too (up
to ``num_workers`` start failures), so one bad node does not stop the job, while an engine
that cannot be built anywhere stops it with the reason.

At the end every actor closes its engine (``close()``: vLLM frees the memory it reserved) and
is killed, and the driver waits until each one's process has exited (checked on the actor's
node: Ray fails a killed actor's calls before its process is gone), so the next stage of a
pipeline (a trainer on the same GPUs) starts with the memory free.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from meds3.rollout.ray_config import RayConfig

logger = logging.getLogger(__name__)

_FETCH_TIMEOUT_S = 60.0  # wait for a finished unit's result from an actor that died afterwards
_CLOSE_TIMEOUT_S = 120.0  # wait for an actor to close its engine at the end of a job


@dataclass
class Unit:
    """A work unit: items (questions) processed together by one actor, plus what else the
    actor needs to know about them (``meta``: e.g. the dataset and run of an evaluation)."""

    id: int
    questions: list[Any]
    meta: dict[str, Any] = field(default_factory=dict)  # recorded with a failed unit
    attempts: int = 0  # failed attempts so far
    errors: list[str] = field(default_factory=list)
    payload: Any = None  # what else the job needs to run it (not recorded)
    # run alone on its actor (nothing queued with it), so a failure is surely its own: set for
    # units on their last attempt, whose failure splits or fails them
    solo: bool = False


@dataclass
class WorkerState:
    """The driver's view of one actor."""

    id: int
    handle: Any
    inflight: deque = field(default_factory=deque)  # (ref, unit), oldest (running) first
    running_since: float = 0.0  # monotonic time the oldest unit in flight started (about)
    created: float = 0.0  # monotonic time the actor was asked for (its start has a deadline too)
    ready: bool = False  # engine built; only ready actors are given units
    alive: bool = True
    host: str = ""
    node: str = ""  # Ray node id
    pid: int = 0
    died: str = ""
    units: int = 0
    items: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # job-specific totals (nodes, ...)
    generated_tokens: int = 0
    busy_s: float = 0.0
    first_start: float = float("inf")  # actor clock: first unit started
    last_end: float = 0.0  # actor clock: last unit ended

    def throughput(self, item: str = "items") -> dict[str, Any]:
        """Units, items (named ``item``), tokens; rates over busy time; ``utilization``: busy
        share of the span from its first unit's start to its last unit's end (below 1: it
        waited for the driver)."""
        busy = max(self.busy_s, 1e-9)
        span = max(self.last_end - self.first_start, busy)
        return {"worker": self.id, "host": self.host, "node": self.node, "pid": self.pid, "alive": self.alive,
                "died": self.died, "units": self.units, item: self.items, **self.counts,
                "generated_tokens": self.generated_tokens,
                "busy_s": round(self.busy_s, 2), f"{item}_per_s": round(self.items / busy, 4),
                "tokens_per_s": round(self.generated_tokens / busy, 1),
                "utilization": round(self.busy_s / span, 3) if self.units else 0.0}


def actor_info() -> dict[str, Any]:
    """Where the calling actor runs: host name, Ray node id ("" outside Ray: asking Ray for it
    would start a Ray instance), process id."""
    import socket

    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"host": socket.gethostname(), "node": node, "pid": os.getpid()}


def default_engine_factory(config: Any):
    """The engine an actor builds from its job's config (rollout or evaluation alike):
    :func:`meds3.engines.config.build_engine_from`."""
    from meds3.engines.config import build_engine_from

    return build_engine_from(config)


def set_torch_threads(threads: int) -> None:
    """Give torch ``threads`` intra-op threads in this process without importing it: an actor
    whose engine does not use torch (an OpenAI-compatible server's client, a scripted engine)
    then never loads it, which is 2 s of every actor start on a two-core machine. Where torch
    is loaded already the count is set directly; otherwise it goes into the environment that
    torch's OpenMP and MKL read when torch is first imported. (Torch caps a count read there at
    the machine's cores, as it does for a user's own ``OMP_NUM_THREADS``: more threads than
    cores only oversubscribe them.)"""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


class EngineActor:
    """The part every meds3 actor body shares: torch threads, the config with the shipped adapter
    (and PRM) unpacked locally, one engine, ``info()`` and ``close()``.

    Args:
        worker_id: the driver's number for this actor (shown in summaries).
        config: the job's config (its ``ray.threads`` and, after localizing, its ``adapter``).
        engine_factory: ``factory(config) -> engine``, run here with the localized config
            (default :func:`default_engine_factory`).
        shipment: the adapter and PRM packed by the driver (no path of the driver's is read);
            None: the config's own paths.
    """

    def __init__(self, worker_id: int, config: Any, engine_factory: Optional[Callable[[Any], Any]] = None,
                 shipment: Any = None):
        set_torch_threads(config.ray.threads)
        self.worker_id = worker_id
        self.config = shipment.localize(config) if shipment is not None else config
        self.adapter_sha256 = shipment.adapter_sha256 if shipment is not None else ""
        self.engine = (engine_factory or default_engine_factory)(self.config)

    def info(self) -> dict[str, Any]:
        """Where this actor runs (host, node, process id), its torch threads (None where its engine
        does not use torch) and adapter."""
        torch = sys.modules.get("torch")
        return {**actor_info(), "torch_threads": torch.get_num_threads() if torch is not None else None,
                "adapter": self.config.adapter, "adapter_sha256": self.adapter_sha256}

    def close(self) -> dict[str, Any]:
        """Close the engine (vLLM frees the memory it reserved); the driver calls this at the end."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()
        self.engine = None
        return {"worker": self.worker_id, "pid": os.getpid()}


def connect(ray_config: RayConfig) -> bool:
    """Start or join Ray unless already connected; True if this call connected (and should shut down).

    ``address`` None starts a local instance unless ``RAY_ADDRESS`` is set, which Ray then
    joins; ``"auto"`` joins the cluster this machine belongs to.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": ray_config.address, "log_to_driver": True}
    if ray_config.runtime_env:
        kwargs["runtime_env"] = ray_config.runtime_env
    if ray_config.address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    return True


class RayUnitJob:
    """Units of work on Ray actors, stored by the driver alone; see the module docstring.

    Subclasses say which actor to start (:meth:`actor_class`, an :class:`EngineActor` built with
    ``(worker_id, config, engine_factory, shipment)``), what it must receive through the object
    store (:meth:`shipment`, packed once per job), how a unit is sent to it (:meth:`unit_args`)
    and how its result is stored (:meth:`store_result`). The actor's ``run_unit(*unit_args)``
    returns a dict with ``seconds``, ``started_at``, ``ended_at`` and ``generated_tokens``.

    Args:
        config: the job's config; its ``ray`` section says actors, resources, unit size, retries.
        engine_factory: ``factory(config) -> engine`` run in each actor (default
            :func:`default_engine_factory`); picklable.
        progress: show a progress bar.
        on_unit_done: called as ``on_unit_done(job, result)`` after each unit is stored (a hook
            for monitoring and fault-injection tests).
        item: what the units hold, for the progress bar and summaries (``trees``, ``responses``).
        name: the job's kind, for messages (``rollout``, ``evaluation``).
    """

    def __init__(self, config: Any, engine_factory: Optional[Callable[[Any], Any]] = None, progress: bool = True,
                 on_unit_done: Optional[Callable[["RayUnitJob", dict], None]] = None, item: str = "items",
                 name: str = "ray"):
        self.config = config
        self.engine_factory = engine_factory
        self.ray_config: RayConfig = config.ray
        self.name = name
        self.progress = progress
        self.on_unit_done = on_unit_done
        self.item = item
        self.workers: dict[int, WorkerState] = {}
        self.pending: deque[Unit] = deque()
        self.failed_units: list[dict[str, Any]] = []
        self.retries = 0
        self.replacements_left = self.ray_config.replacements
        self.generated_tokens = 0
        self.items_done = 0
        self.driver_store_s = 0.0  # the single writer's time per stored unit bounds a cluster's throughput
        self.closed_workers: list[int] = []  # actors that closed their engine at the end
        self.timeouts = 0  # units that ran past ray.unit_timeout_s
        self.splits = 0  # failing units split in halves
        self.start_failures = 0  # actors that failed to start before any was ready
        self._next_unit = 0
        self._next_worker = 0
        self._owner: dict[Any, WorkerState] = {}  # unit result ref -> actor
        self._starting: dict[Any, WorkerState] = {}  # readiness ref -> actor
        self._any_ready = False
        self._shipment = None  # ObjectRef of :meth:`shipment`, put once per job
        self._started = time.perf_counter()
        self._bar = None

    # -- what a subclass provides -----------------------------------------------------------
    def actor_class(self) -> type:
        raise NotImplementedError

    def actor_concurrency(self) -> int:
        """Calls an actor runs at once: 1 (units in order) unless the actor streams its units
        through one running forest (then every queued unit, plus ``info``/``close``)."""
        return 1

    def shipment(self) -> Any:
        """What every actor reads instead of the driver's disk (a
        :class:`meds3.rollout.shipping.Shipment`)."""
        raise NotImplementedError

    def actor_args(self, worker_id: int) -> tuple:
        """Arguments of the actor's constructor; the shipment is packed and put in the object
        store once per job, and every actor (replacements too) gets the same reference."""
        import ray

        if self._shipment is None:
            self._shipment = ray.put(self.shipment())
        return worker_id, self.config, self.engine_factory, self._shipment

    def unit_args(self, unit: Unit) -> tuple:
        """Arguments of the actor's ``run_unit`` for ``unit``."""
        raise NotImplementedError

    def store_result(self, unit: Unit, result: dict[str, Any]) -> int:
        """Store a finished unit's output (the driver's only write); returns its item count."""
        raise NotImplementedError

    def unit_counts(self, result: dict[str, Any]) -> dict[str, int]:
        """Job-specific per-worker totals to add from a result (e.g. tree nodes)."""
        return {}

    def check_resources(self) -> None:
        """Warn when the cluster cannot hold every actor at once."""
        import ray

        r = self.ray_config
        have = ray.cluster_resources()
        for name, per in (("CPU", r.num_cpus_per_worker), ("GPU", r.num_gpus_per_worker)):
            if per and have.get(name, 0) < per * r.num_workers:
                logger.warning("the cluster has %s %s for %d workers x %s: some actors will wait for resources",
                               have.get(name, 0), name, r.num_workers, per)

    # -- actors ---------------------------------------------------------------------------
    def start_worker(self) -> WorkerState:
        """Create one actor with the job's resources (it loads its engine asynchronously)."""
        import ray

        r = self.ray_config
        actor_cls = ray.remote(self.actor_class()).options(num_cpus=r.num_cpus_per_worker,
                                                           num_gpus=r.num_gpus_per_worker,
                                                           max_restarts=0, max_task_retries=0,
                                                           max_concurrency=self.actor_concurrency())
        wid = self._next_worker
        self._next_worker += 1
        state = WorkerState(wid, actor_cls.remote(*self.actor_args(wid)), created=time.monotonic())
        self.workers[wid] = state
        self._starting[state.handle.info.remote()] = state
        return state

    def alive(self) -> list[WorkerState]:
        return [w for w in self.workers.values() if w.alive]

    # -- the loop -------------------------------------------------------------------------
    def run_units(self, units: list[Unit], total: Optional[int] = None) -> None:
        """Process every unit (or record it failed); at the end close and remove every actor."""
        from tqdm.auto import tqdm

        self._started = time.perf_counter()
        self.pending = deque(units)
        self._next_unit = max((u.id for u in units), default=-1) + 1
        count = total if total is not None else sum(len(u.questions) for u in units)
        self._bar = tqdm(total=count, desc=self.item, unit=self.item.rstrip("s"), disable=not self.progress,
                         dynamic_ncols=True)
        try:
            if self.pending:
                self.check_resources()
                for _ in range(min(self.ray_config.num_workers, len(self.pending))):
                    self.start_worker()
                self._loop()
        except BaseException:
            self._bar.close()
            try:  # never let a failing clean-up hide the error that stopped the job
                self.shutdown_workers()
            except Exception as exc:  # noqa: BLE001
                logger.error("could not shut the actors down after an error: %s", _reason(exc))
            raise
        self._bar.close()
        self.shutdown_workers()

    def shutdown_workers(self) -> None:
        """Close every live actor's engine, kill the actors and wait until their processes have
        exited, so their memory (vLLM's reservation included) is free when this returns."""
        import ray

        ending = [w for w in self.workers.values() if w.alive and w.pid]
        closing = {}
        for w in self.workers.values():
            if w.alive and w.ready:
                closing[w.handle.close.remote()] = w
        for ref, w in closing.items():
            try:
                ray.get(ref, timeout=_CLOSE_TIMEOUT_S)
                self.closed_workers.append(w.id)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                logger.warning("worker %d did not close its engine: %s", w.id, _reason(exc))
        for w in self.workers.values():
            ray.kill(w.handle)
        deadline = time.monotonic() + _CLOSE_TIMEOUT_S
        for w in self.workers.values():
            while not _gone(w.handle, deadline):
                if time.monotonic() > deadline:
                    logger.warning("worker %d still answers %.0f s after being killed", w.id, _CLOSE_TIMEOUT_S)
                    break
                time.sleep(0.05)
        # Ray fails an actor's calls as soon as it is killed, while its process may still be
        # exiting with its memory held: wait for the processes themselves, each on its node.
        # (Only those alive until now: an actor that died earlier in a long job has long exited,
        # and its pid may since belong to another process.)
        by_node: dict[str, list[int]] = {}
        for w in ending:
            by_node.setdefault(w.node, []).append(w.pid)
        for node, pids in wait_exited_on_nodes(by_node, deadline).items():
            logger.warning("actor processes %s on node %s still running %.0f s after being killed", pids, node,
                           _CLOSE_TIMEOUT_S)

    def summary(self, seconds: float) -> dict[str, Any]:
        """The job's scheduling figures (the ``ray`` section of a summary)."""
        return {"workers": len(self.workers), "unit_size": self.ray_config.unit_size, "seconds": round(seconds, 2),
                f"{self.item}_done": self.items_done, "timeouts": self.timeouts, "splits": self.splits,
                "start_failures": self.start_failures,
                f"{self.item}_per_s": round(self.items_done / max(seconds, 1e-9), 4),
                "tokens_per_s": round(self.generated_tokens / max(seconds, 1e-9), 1),
                "driver_store_s": round(self.driver_store_s, 3), "retries": self.retries,
                "failed_units": self.failed_units, "closed_workers": sorted(self.closed_workers),
                "per_worker": [w.throughput(self.item) for w in self.workers.values()]}

    def _loop(self) -> None:
        import ray

        while self.pending or self._owner:
            self._submit()
            if not self._owner and not self._starting:
                for unit in self.pending:
                    self._fail(unit, "no live workers and no replacements left")
                self.pending.clear()
                continue
            ready, _ = ray.wait([*self._owner, *self._starting], num_returns=1, timeout=self._wait_s())
            if not ready:
                self._check_deadlines()
                continue
            ref = ready[0]
            if ref in self._starting:
                self._worker_started(self._starting.pop(ref), ref)
                continue
            worker = self._owner.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._worker_died(worker, ref, exc)
                continue
            except ray.exceptions.RayError as exc:  # the unit raised inside a live actor
                if _engine_failed(exc):  # a broken engine (lost CUDA context) fails every later unit
                    logger.warning("worker %d: its engine failed for good; replacing the actor", worker.id)
                    ray.kill(worker.handle)
                    self._worker_died(worker, ref, exc)  # charges this unit, requeues the others, replaces
                    continue
                unit = self._pop_inflight(worker, ref)
                self._charge(unit, f"worker {worker.id}: {_reason(exc)}")
                continue
            unit = self._pop_inflight(worker, ref)
            self._store_unit(worker, unit, result)

    def _wait_s(self) -> Optional[float]:
        """How long the loop may block: until the nearest deadline of a running unit or of an
        actor's start (None: no deadline)."""
        unit, start = self.ray_config.unit_timeout_s, self.ray_config.start_deadline_s
        deadlines = [w.running_since + unit for w in self.alive() if w.inflight and unit is not None]
        deadlines += [w.created + start for w in self._starting.values() if start is not None]
        if not deadlines:
            return None
        return max(0.05, min(deadlines) - time.monotonic())

    def _check_deadlines(self) -> None:
        """Kill and replace every actor whose running unit is past ``ray.unit_timeout_s``; kill an
        actor still starting after ``ray.start_timeout_s`` (default: the same; its start then
        fails and is handled as such)."""
        import ray

        timeout, start = self.ray_config.unit_timeout_s, self.ray_config.start_deadline_s
        now = time.monotonic()
        for w in list(self._starting.values()):
            if start is not None and now - w.created > start and not w.died:
                self.timeouts += 1
                name = "start_timeout_s" if self.ray_config.start_timeout_s is not None else "unit_timeout_s"
                w.died = f"start ran past ray.{name} ({start:g} s)"
                logger.warning("worker %d: still starting after %.0f s; killing the actor", w.id, start)
                ray.kill(w.handle)
        for w in list(self.alive()):
            if timeout is not None and w.inflight and now - w.running_since > timeout:
                self.timeouts += 1
                logger.warning("worker %d: unit %d still running after %.0f s; killing the actor", w.id,
                               w.inflight[0][1].id, timeout)
                ray.kill(w.handle)
                self._worker_died(w, None, TimeoutError(f"unit ran past ray.unit_timeout_s ({timeout:g} s)"))

    def _worker_started(self, worker: WorkerState, ref) -> None:
        """An actor built its engine (or failed to: then it is dead, and if no actor ever
        started the job stops, since the engine cannot be built)."""
        import ray

        try:
            info = ray.get(ref)
            worker.host, worker.node, worker.pid = info["host"], info.get("node", ""), info.get("pid", 0)
        except ray.exceptions.RayError as exc:
            if self._any_ready:  # others built the same engine: this actor was unlucky, replace it
                self._worker_died(worker, ref, exc)
                return
            worker.alive, worker.died = False, worker.died or _reason(exc)  # a bad model or option, or a bad node
            self.start_failures += 1
            logger.error("worker %d could not start: %s", worker.id, worker.died)
            if self.start_failures <= self.ray_config.num_workers and self.replacements_left > 0 and self.pending:
                self.replacements_left -= 1  # one bad node must not stop the job: try another actor
                self.start_worker()
            elif not self.alive():
                raise RuntimeError(f"no {self.name} worker could start: {worker.died}") from exc
            return
        worker.ready = self._any_ready = True
        logger.info("worker %d ready on %s", worker.id, worker.host)

    def _submit(self) -> None:
        """Keep up to ``units_in_flight`` units queued on every ready actor: breadth first (each
        gets a first unit before any gets a second), and a queued second unit only while the
        pending units outnumber the actors still starting, so none of those is left idle."""
        ready = [w for w in self.alive() if w.ready]
        starting = len(self.alive()) - len(ready)
        for depth in range(1, self.ray_config.units_in_flight + 1):
            for w in sorted(ready, key=lambda w: len(w.inflight)):
                if self.pending and len(w.inflight) < depth and (depth == 1 or len(self.pending) > starting):
                    unit = self._take_for(w)
                    if unit is None:
                        continue
                    ref = w.handle.run_unit.remote(*self.unit_args(unit))
                    if not w.inflight:
                        w.running_since = time.monotonic()
                    w.inflight.append((ref, unit))
                    self._owner[ref] = w

    def _take_for(self, worker: WorkerState) -> Optional[Unit]:
        """The next pending unit ``worker`` may take: a solo unit only onto an idle actor, and
        nothing onto an actor running a solo unit."""
        if any(u.solo for _, u in worker.inflight):
            return None
        for i, unit in enumerate(self.pending):
            if not unit.solo or not worker.inflight:
                del self.pending[i]
                return unit
        return None

    def _pop_inflight(self, worker: WorkerState, ref) -> Unit:
        for i, (r, unit) in enumerate(worker.inflight):
            if r == ref:
                del worker.inflight[i]
                if i == 0:  # the next unit starts now
                    worker.running_since = time.monotonic()
                return unit
        raise RuntimeError(f"unit of {ref} not found on worker {worker.id}")

    def _store_unit(self, worker: WorkerState, unit: Unit, result: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        items = self.store_result(unit, result)
        self.driver_store_s += time.perf_counter() - t0
        worker.units += 1
        worker.items += items
        for key, value in self.unit_counts(result).items():
            worker.counts[key] = worker.counts.get(key, 0) + value
        worker.generated_tokens += result["generated_tokens"]
        worker.busy_s += result["seconds"]
        worker.first_start = min(worker.first_start, result["started_at"])
        worker.last_end = max(worker.last_end, result["ended_at"])
        self.items_done += items
        self.generated_tokens += result["generated_tokens"]
        self._bar.update(items)
        self._show()
        if self.on_unit_done is not None:
            self.on_unit_done(self, result)

    def _worker_died(self, worker: WorkerState, ref, exc: Exception) -> None:
        """Requeue the dead actor's units (charging the one it was running) and replace it."""
        import ray

        reason = f"worker {worker.id} died: {_reason(exc)}"
        if worker.alive:
            worker.alive, worker.died = False, worker.died or _reason(exc)
            logger.warning("%s", reason)
        for r, w in list(self._starting.items()):
            if w is worker:
                del self._starting[r]
        lost: list[Unit] = []
        # A unit the actor finished before it died is stored, not done again. Its result may
        # still be on its way through the object store, so wait for all of them at once (the
        # unfinished ones fail as soon as Ray knows the actor is dead).
        others = [r for r, _ in worker.inflight if r != ref]
        settled = set(ray.wait(others, num_returns=len(others), timeout=_FETCH_TIMEOUT_S)[0]) if others else set()
        for r, unit in list(worker.inflight):
            self._owner.pop(r, None)
            result = None
            if r in settled:
                try:
                    result = ray.get(r, timeout=0)
                except (ray.exceptions.RayError, TimeoutError):
                    result = None
            if result is None:
                lost.append(unit)
            else:
                self._store_unit(worker, unit, result)
        worker.inflight.clear()
        # The first lost unit was running; the rest were queued (or, on a streaming actor, ran
        # beside it): with more than one lost, the charge is uncertain.
        for unit in reversed(lost[1:]):
            self.pending.appendleft(unit)
        if lost:  # with other units lost too, the actor might have died on one of those
            self._charge(lost[0], reason, certain=len(lost) == 1)
        if self.pending and self.replacements_left > 0:
            self.replacements_left -= 1
            new = self.start_worker()
            logger.info("started worker %d to replace worker %d (%d replacements left)", new.id, worker.id,
                        self.replacements_left)
        self._show()

    def _charge(self, unit: Unit, reason: str, certain: bool = True) -> None:
        """A failed attempt: requeue the unit; past the retry limit, split it in halves that get
        one attempt each (so a poison question ends up alone), or record a single question
        failed. Only a ``certain`` failure (the unit raised, or its actor died with nothing else
        unfinished) can split or fail a unit; an uncertain one past the limit gets one more
        attempt, alone on its actor."""
        unit.attempts += 1
        unit.errors.append(reason)
        limit = self.ray_config.max_unit_retries
        if unit.attempts <= limit or not certain:
            self.retries += 1
            unit.attempts = min(unit.attempts, limit)
            unit.solo = unit.solo or unit.attempts >= limit
            self.pending.appendleft(unit)
        elif len(unit.questions) > 1:
            self.splits += 1
            half = (len(unit.questions) + 1) // 2
            halves = []
            for part in (unit.questions[:half], unit.questions[half:]):
                halves.append(Unit(self._next_unit, part, {**unit.meta, "split_from": unit.id}, limit,
                                   list(unit.errors), unit.payload, solo=True))
                self._next_unit += 1
            logger.warning("unit %d failed %d times (%s); trying its halves, units %d and %d, apart", unit.id,
                           unit.attempts, reason, halves[0].id, halves[1].id)
            self.pending.extendleft(reversed(halves))
        else:
            self._fail(unit, reason)

    def _fail(self, unit: Unit, reason: str) -> None:
        self.failed_units.append({"unit": unit.id, **unit.meta, "question_ids": [q.id for q in unit.questions],
                                  "attempts": unit.attempts, "reason": reason, "errors": unit.errors})

    def _show(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._bar.set_postfix({f"{self.item}_s": f"{self.items_done / elapsed:.3f}",
                               "tok_s": f"{self.generated_tokens / elapsed:.1f}", "workers": len(self.alive()),
                               "retries": self.retries, "failed": len(self.failed_units)}, refresh=False)


def _engine_failed(exc: BaseException) -> bool:
    """Whether a unit's error is the actor's engine failing for good (``EngineFailure``)."""
    from meds3.mcts.forest import EngineFailure

    return isinstance(getattr(exc, "cause", None), EngineFailure) or "EngineFailure" in str(exc)


def process_exited(pid: int) -> bool:
    """Whether process ``pid`` of this machine has exited. A zombie has (its memory is freed;
    only its exit status waits for its parent), so on Linux its state is read from /proc;
    :func:`meds3.io.process_alive` counts a zombie as running."""
    from meds3.io import process_alive

    if not process_alive(pid):
        return True
    if not Path("/proc/self").is_dir():  # no /proc (macOS): os.kill answered, so it runs (or is a zombie)
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # it exited between the two looks
    return state in ("Z", "X")


def wait_exited(pids: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds until each of ``pids`` (processes of this machine) has
    exited; returns those still running then."""
    deadline = time.monotonic() + timeout
    running = [pid for pid in pids if not process_exited(pid)]
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [pid for pid in running if not process_exited(pid)]
    return running


def _this_node() -> str:
    """The Ray node id of the calling process."""
    import ray

    return ray.get_runtime_context().get_node_id()


def wait_exited_on_nodes(pids_by_node: dict[str, list[int]], deadline: float) -> dict[str, list[int]]:
    """Wait until the given processes have exited, each on its own Ray node (no node reads
    another's process table: the driver's node is checked here, every other by a CPU-less task
    pinned to it). Returns, by node, the processes still running at ``deadline`` (a node that
    cannot be reached counts all of its processes as still running)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = _this_node()

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    remote = ray.remote(num_cpus=0, max_retries=0)(wait_exited)
    refs = {node: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
        pids, left()) for node, pids in pids_by_node.items() if node and node != here}
    running = {}
    for node, pids in pids_by_node.items():
        if node in refs:
            continue
        still = wait_exited(pids, left())
        if still:
            running[node] = still
    for node, ref in refs.items():
        try:
            still = ray.get(ref, timeout=left() + 10.0)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            logger.warning("could not check the actor processes on node %s: %s", node, _reason(exc))
            still = pids_by_node[node]
        if still:
            running[node] = still
    return running


def _gone(handle: Any, deadline: float) -> bool:
    """Whether a killed actor is gone (its calls fail); ``ray.kill`` only asks, and a call sent
    right after it may still be answered."""
    import ray

    try:
        ray.get(handle.info.remote(), timeout=max(1.0, min(10.0, deadline - time.monotonic())))
    except ray.exceptions.RayActorError:
        return True
    except (ray.exceptions.RayError, TimeoutError):
        return False
    return False


def _reason(exc: BaseException) -> str:
    """An error in one line for summaries: its first line and, where Ray wraps a traceback,
    the traceback's last line (the original error)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).strip().splitlines()]
    lines = [line for line in lines if line]
    text = lines[0][:200] if lines else ""
    if len(lines) > 1 and re.match(r"[\w.]+(Error|Exception|Interrupt|Exit)\b", lines[-1]):
        text += f" ... {lines[-1][:200]}"
    return f"{type(exc).__name__}: {text}"
