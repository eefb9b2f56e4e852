"""Evaluation on Ray actors: the responses of a benchmark evaluation generated on every node.

The paper's evaluation (11 benchmarks x greedy + 16 samples x 2 budgets, for the base policy
and every iteration) is more generation than the rollouts of small pools. Here the missing
responses are cut into work units (``ray.unit_size`` questions of one dataset and one run) and
scheduled on :class:`EvalWorker` actors, one engine each, by the scheduler the rollouts use
(:class:`meds3.rollout.ray_units.RayUnitJob`): dynamic scheduling, a dead actor's units
requeued and retried, engines closed at the end. Actors return responses as plain data; the
driver alone appends them to the response files, one unit at a time (written and fsynced
whole), so a rerun generates exactly the questions whose responses are missing, and nothing is
written twice. The policy adapter travels through Ray's object store like the rollouts'
(:mod:`meds3.rollout.shipping`). PRM scoring stays in the driver (:func:`meds3.eval.run_eval`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from meds3.data.question import MedQuestion
from meds3.eval.config import EvalConfig
from meds3.rollout.ray_units import EngineActor, RayUnitJob, Unit, connect, default_engine_factory
from meds3.rollout.shipping import Shipment

logger = logging.getLogger(__name__)

__all__ = ["EngineFactory", "EvalWorker", "RayEvalJob", "default_engine_factory", "generate_on_ray"]

EngineFactory = Callable[[EvalConfig], Any]


class EvalWorker(EngineActor):
    """A Ray actor body: one engine; samples the responses of the units it is given.

    Args:
        worker_id: the driver's number for this actor.
        config: the evaluation (sampling settings, prompt, engine options).
        engine_factory: ``factory(config) -> engine`` (default :func:`default_engine_factory`).
        shipment: the policy adapter, packed by the driver (no path of the driver's is read).
    """

    def run_unit(self, unit_id: int, kind: str, n: int, budget: Optional[int],
                 questions: list[dict[str, Any]]) -> dict[str, Any]:
        """Sample one unit's questions in one engine call; returns their responses as dicts."""
        from meds3.eval.runner import Run, sampler_config
        from meds3.infer.sampler import sample_responses

        qs = [MedQuestion.from_dict(q) for q in questions]
        started_at, start = time.time(), time.perf_counter()
        results = sample_responses(self.engine, qs, sampler_config(self.config, Run(kind, n, budget)),
                                   self.config.prompt, progress=False)
        return {"unit": unit_id, "worker": self.worker_id, "adapter_sha256": self.adapter_sha256,
                "responses": [[r.to_dict() for r in rs] for rs in results],
                "generated_tokens": sum(r.num_tokens for rs in results for r in rs),
                "seconds": time.perf_counter() - start, "started_at": started_at, "ended_at": time.time()}


class RayEvalJob(RayUnitJob):
    """Generate the missing responses of an evaluation on Ray actors; see the module docstring.

    Args:
        config: the evaluation (``config.ray`` says how many actors and what each reserves).
        out: its output directory (the driver appends to ``responses/*.jsonl``).
        engine_factory: ``factory(config) -> engine`` run in each actor; picklable.
        progress: show a progress bar.
        on_unit_done: ``hook(job, result)`` after each stored unit.
    """

    def __init__(self, config: EvalConfig, out: Path, engine_factory: Optional[EngineFactory] = None,
                 progress: bool = True, on_unit_done: Optional[Callable[["RayEvalJob", dict], None]] = None):
        super().__init__(config, engine_factory, progress, on_unit_done, item="responses", name="evaluation")
        self.out = out
        self.served_adapters: set[str] = set()
        self._written: dict[Path, set[str]] = {}

    def actor_class(self) -> type:
        return EvalWorker

    def shipment(self) -> Shipment:
        return Shipment.for_paths(self.config.adapter)  # the policy adapter; the PRM scores in the driver

    def unit_args(self, unit: Unit) -> tuple:
        run = unit.payload
        return unit.id, run.kind, run.n, run.budget, [q.to_dict() for q in unit.questions]

    def store_result(self, unit: Unit, result: dict[str, Any]) -> int:
        from meds3.eval.runner import append_responses, read_responses, response_path
        from meds3.infer.sampler import Response

        path = response_path(self.out, unit.meta["dataset"], unit.payload)
        if path not in self._written:
            self._written[path] = set(read_responses(path))
        written = self._written[path]
        keep = [(q, [Response.from_dict(r) for r in rs]) for q, rs in zip(unit.questions, result["responses"])
                if q.id not in written]  # a unit is stored once, so this only guards against bugs
        append_responses(path, [q for q, _ in keep], [rs for _, rs in keep])
        written.update(q.id for q, _ in keep)
        self.served_adapters.add(result["adapter_sha256"])
        return sum(len(rs) for _, rs in keep)

    def run_chunks(self, chunks: list[tuple[str, Any, list[MedQuestion]]]) -> dict[str, Any]:
        """Generate every chunk; returns the scheduling summary."""
        started = time.perf_counter()
        units = [Unit(i, chunk, {"dataset": name, "run": run.name}, payload=run)
                 for i, (name, run, chunk) in enumerate(chunks)]
        self.run_units(units, total=sum(len(chunk) * run.n for _, run, chunk in chunks))
        summary = self.summary(time.perf_counter() - started)
        summary["served_adapters"] = sorted(self.served_adapters)
        if self.failed_units:
            logger.warning("%d evaluation unit(s) failed after %d attempts (a rerun generates them again): %s",
                           len(self.failed_units), self.ray_config.max_unit_retries + 1,
                           json.dumps(summary["failed_units"])[:500])
        return summary


def generate_on_ray(config: EvalConfig, out: Path, chunks: list[tuple[str, Any, list[MedQuestion]]],
                    progress: bool = True, engine_factory: Optional[EngineFactory] = None,
                    on_unit_done: Optional[Callable[[RayEvalJob, dict], None]] = None) -> dict[str, Any]:
    """Generate the chunks' responses on Ray actors into ``out/responses``; connects to Ray as
    ``config.ray.address`` says unless already connected (then the connection is left open).

    Returns:
        The scheduling summary: workers, seconds, responses/s, tokens/s, retries,
        ``failed_units``, ``closed_workers``, ``served_adapters`` (adapter hashes the actors
        served) and ``per_worker`` throughput. Nothing to generate: ``{"workers": 0}``.
    """
    from meds3.rollout.ray_config import require_ray

    ray = require_ray()  # an optional extra: a clear install hint instead of an ImportError
    if not chunks:
        return {"workers": 0, "responses_done": 0, "failed_units": []}
    connected = connect(config.ray)
    try:
        return RayEvalJob(config, out, engine_factory, progress, on_unit_done).run_chunks(chunks)
    finally:
        if connected:
            ray.shutdown()
