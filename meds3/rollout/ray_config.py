"""The Ray part of a rollout job's config (``RolloutConfig.ray``); importing it needs no Ray."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class RayConfig:
    """How a rollout job runs on Ray (``ray.*`` keys of a rollout config).

    Each worker is one Ray actor that owns one engine and runs the forest search on the
    work units (``unit_size`` questions) the driver gives it; the driver is the only writer
    of the tree store.
    """

    enabled: bool = False  # run on Ray (the CLI's --ray sets it)
    address: Optional[str] = None  # None: $RAY_ADDRESS if set, else start a local instance; "auto": join a cluster
    num_workers: int = 2  # actors, one engine each
    num_cpus_per_worker: float = 1.0  # Ray CPUs reserved per actor
    num_gpus_per_worker: float = 0.0  # Ray GPUs per actor (0 on CPU machines; 1 per vLLM engine on GPU nodes)
    torch_threads: Optional[int] = None  # torch threads per actor (None: num_cpus_per_worker, at least 1)
    # questions per work unit; each unit's forest drains at its end, so several times live_trees,
    # while a killed actor or driver loses at most the units in flight
    unit_size: int = 64
    units_in_flight: int = 2  # units queued per actor, so an actor never waits for the driver
    max_unit_retries: int = 2  # a unit whose actor died is rescheduled at most this many times
    # new actors started for dead ones (None: num_workers * (max_unit_retries + 1 + log2(unit_size)))
    max_worker_replacements: Optional[int] = None
    # a unit running longer than this on its actor (a hung engine) is charged a retry, and the
    # actor is killed and replaced; None: no deadline. Size it to several times a unit's time.
    unit_timeout_s: Optional[float] = 6 * 3600.0
    # an actor still starting (building its engine) after this long is killed and its start
    # handled as failed; None: unit_timeout_s. Loading a model and starting a unit differ in time.
    start_timeout_s: Optional[float] = None
    runtime_env: dict[str, Any] = field(default_factory=dict)  # ray.init runtime environment (env_vars, pip, ...)

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.num_cpus_per_worker < 0 or self.num_gpus_per_worker < 0:
            raise ValueError("num_cpus_per_worker and num_gpus_per_worker must be >= 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.unit_size < 1 or self.units_in_flight < 1:
            raise ValueError("unit_size and units_in_flight must be >= 1")
        if self.max_unit_retries < 0:
            raise ValueError(f"max_unit_retries must be >= 0, got {self.max_unit_retries}")
        if self.max_worker_replacements is not None and self.max_worker_replacements < 0:
            raise ValueError(f"max_worker_replacements must be >= 0, got {self.max_worker_replacements}")
        if self.unit_timeout_s is not None and not self.unit_timeout_s > 0:
            raise ValueError(f"unit_timeout_s must be > 0 or null, got {self.unit_timeout_s}")
        if self.start_timeout_s is not None and not self.start_timeout_s > 0:
            raise ValueError(f"start_timeout_s must be > 0 or null, got {self.start_timeout_s}")

    @property
    def start_deadline_s(self) -> Optional[float]:
        """Seconds an actor may take to start: ``start_timeout_s``, else ``unit_timeout_s``."""
        return self.start_timeout_s if self.start_timeout_s is not None else self.unit_timeout_s

    @property
    def threads(self) -> int:
        """Torch threads each actor uses."""
        return self.torch_threads or max(1, int(self.num_cpus_per_worker))

    @property
    def replacements(self) -> int:
        """Most actors started to replace dead ones over a job. Default: enough for every
        worker to lose one unit to a question that kills its actor, through all its retries
        and the halvings down to that question."""
        if self.max_worker_replacements is not None:
            return self.max_worker_replacements
        return self.num_workers * (self.max_unit_retries + 1 + math.ceil(math.log2(self.unit_size)))


RAY_INSTALL_HINT = "pip install 'meds3[ray]'"


def require_ray():
    """The ``ray`` module, imported for a command that runs on Ray (Ray is an optional extra).

    Raises:
        ConfigError: Ray is not installed (the message has the install command).
    """
    try:
        import ray
    except ImportError as exc:
        from meds3.config import ConfigError

        raise ConfigError(f"this job runs on Ray (--ray, ray.enabled or a Ray address), but Ray is not "
                          f"installed ({exc}); install it with: {RAY_INSTALL_HINT}") from exc
    return ray
