"""The one engine config every generating stage shares, and the one place an engine is built.

:class:`EngineConfig` is the policy that generates text: ``model``, ``backend``, ``engine``
(the backend's options) and ``adapter``. The rollout, evaluation and Ray actors' configs are
built on it (they subclass it), so in YAML these stay four flat keys, as they always were::

    model: smollm2-135m-instruct
    backend: vllm
    engine: {gpu_memory_utilization: 0.5}
    adapter: runs/evolve/iter1/policy/adapter

There is no nested ``engine:`` section: ``engine:`` has always meant the backend's options, and
one key with two meanings (options, or a section holding ``model``/``backend``) would make a
typo in an option name read as a section key (docs/configuration.md, "The engine").

:func:`build_engine_from` is the one builder: the rollout runner, the Ray actors, the eval
runner, the evolution loop and :func:`meds3.infer.answer_many` all call it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar

if TYPE_CHECKING:
    from meds3.engines.base import Engine

#: The backends a config may name. A backend added with ``register_backend`` is reached through
#: :func:`meds3.engines.build_engine` directly; a config names the built-in ones.
Backend = Literal["transformers", "vllm", "openai"]

#: The fields of :class:`EngineConfig`, in the order they appear in a config.
ENGINE_FIELDS = ("model", "backend", "engine", "adapter")

C = TypeVar("C", bound="EngineConfig")


@dataclass
class EngineConfig:
    """The generating policy: which model, on which backend, with which options and adapter.

    Attributes:
        model: a local directory, an embedded alias (``smollm2-135m-instruct``,
            ``tiny-random-llama``) or a Hugging Face id.
        backend: ``transformers`` (CPU or CUDA), ``vllm`` or ``openai``.
        engine: options of the backend (an allow-list per backend,
            :data:`meds3.engines.base.BACKEND_OPTIONS`); the YAML key is ``engine:``.
        adapter: LoRA adapter directory of the policy (None: the base model); sent with each
            request, so one engine serves the base model and every adapter.

    Raises:
        ValueError: (from ``__post_init__``) a blank model or adapter, options that are not a
            mapping; ``ConfigError`` for an option the backend does not know.
    """

    model: str = "smollm2-135m-instruct"
    backend: Backend = "transformers"
    engine: dict[str, Any] = field(default_factory=dict)
    adapter: Optional[str] = None

    def __post_init__(self) -> None:
        from meds3.engines.base import check_engine_options

        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must name a model (path, alias or Hugging Face id), got {self.model!r}")
        if self.adapter is not None and (not isinstance(self.adapter, str) or not self.adapter.strip()):
            raise ValueError(f"adapter must be a folder or null, got {self.adapter!r}")
        if not isinstance(self.engine, dict):
            raise ValueError(f"engine must be a mapping of backend options, got {type(self.engine).__name__}")
        check_engine_options(self.backend, self.engine)  # a typo in an option is named at load

    def engine_options(self) -> dict[str, Any]:
        """The options the engine is built with: ``engine`` as given. Stage configs override
        this to derive ``max_model_len`` from their longest request (:mod:`meds3.engines.lengths`)."""
        return dict(self.engine)

    def engine_config(self) -> EngineConfig:
        """This config's engine part alone, with :meth:`engine_options` resolved (what a Ray
        actor or :func:`meds3.infer.answer_many` needs; a plain :class:`EngineConfig`)."""
        return EngineConfig(self.model, self.backend, self.engine_options(), self.adapter)

    def with_engine(self: C, engine: EngineConfig) -> C:
        """A copy of this config with the four engine fields taken from ``engine`` (how the
        evolution loop points every stage at the policy of the iteration)."""
        return dataclasses.replace(self, **{name: getattr(engine, name) for name in ENGINE_FIELDS})


def build_engine_from(config: EngineConfig) -> Engine:
    """Build the engine ``config`` describes: ``build_engine(model, backend, **engine_options())``.

    Takes an :class:`EngineConfig` or any stage config built on it (rollout, evaluation). The
    adapter is not part of the engine: requests carry it.

    Raises:
        ValueError: unknown backend or option.
        ImportError: the backend's library is missing.
        ModelResolutionError: the model cannot be found or built.
    """
    import meds3.engines

    # Looked up on the package at call time: a test (or a caller) that replaces
    # meds3.engines.build_engine sees every engine the stages build.
    return meds3.engines.build_engine(config.model, backend=config.backend, **config.engine_options())
