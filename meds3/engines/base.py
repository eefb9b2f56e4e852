"""The generation interface every backend implements, and the backend registry."""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from meds3.engines.types import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

_BACKENDS: dict[str, type["Engine"]] = {}
# Built-in backends are imported on first use, so ``import meds3`` never imports vllm.
_BUILTIN_MODULES = {
    "transformers": "meds3.engines.hf_backend",
    "vllm": "meds3.engines.vllm_backend",
    "openai": "meds3.engines.openai_backend",
}


class Engine(ABC):
    """Generates text for batches of requests.

    Subclasses implement :meth:`generate` and set ``self.tokenizer`` (a transformers
    tokenizer) and ``self.model_path``. Callers should send everything they have in one call:
    the engine batches, shares prefills and reuses cached prefixes inside it.
    """

    backend: str = ""
    tokenizer: Any = None
    model_path: str = ""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Sample every request.

        Args:
            requests: the requests; each is sampled ``request.n`` times.

        Returns:
            One result per request, in the same order.

        Raises:
            ValueError: a request the backend cannot serve (e.g. a prompt longer than the
                model's context).
        """

    # ------------------------------------------------------------ streaming
    # A caller that can use each result as soon as it is ready (the asynchronous forest: a
    # tree advances when its own requests finish, not when the slowest request of a round
    # does) submits requests and polls for finished ones; new submissions join the running
    # batch. By default (:class:`GenerateStream`) one ``generate`` call per poll runs all that
    # was submitted, so any backend streams; the transformers and vLLM backends override these
    # three methods with their own decode loops.

    def submit(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """Queue ``requests`` for generation; return one ticket per request, in order (unique
        over the engine's life).

        Raises:
            ValueError: a request the backend cannot serve; then none of ``requests`` is queued
                (the transformers and vLLM backends check here; the default
                :class:`GenerateStream` can only find out in :meth:`poll`, which then raises).
        """
        return self._default_stream().submit(requests)

    def poll(self) -> list[tuple[int, GenerationResult]]:
        """Generate until at least one submitted request is finished; return every finished
        ``(ticket, result)`` (empty when nothing is pending).

        If this raises, every unfinished ticket is dropped (:meth:`pending` is 0 afterwards):
        the caller submits again what it still needs.
        """
        return self._default_stream().poll()

    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`poll`."""
        return self._default_stream().pending()

    def _default_stream(self) -> "GenerateStream":
        stream = self.__dict__.get("_generate_stream")
        if stream is None:
            stream = self._generate_stream = GenerateStream(self)
        return stream

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without added special tokens (as prompts are encoded)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``token_ids``."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def chat_prompt(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """Render chat ``messages`` with the model's chat template.

        Args:
            messages: ``[{"role": "user", "content": ...}, ...]``.
            add_generation_prompt: end with the assistant turn header.

        Returns:
            Prompt text to put in :attr:`GenerationRequest.prompt`.
        """
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def close(self) -> None:  # noqa: B027 -- optional hook: engines without processes keep the no-op
        """Release the model and worker processes (no-op by default)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GenerateStream:
    """The streaming interface (``submit``/``poll``/``pending``) over any object with
    ``generate``: each poll runs everything submitted since the last one in one call. Gives
    engines without a decode loop of their own (or duck-typed test engines) a stream."""

    def __init__(self, engine: Any):
        self.engine = engine
        self._queue: list[tuple[int, GenerationRequest]] = []
        self._next = 0

    def submit(self, requests: Sequence[GenerationRequest]) -> list[int]:
        requests = list(requests)
        tickets = list(range(self._next, self._next + len(requests)))
        self._next += len(requests)
        self._queue.extend(zip(tickets, requests))
        return tickets

    def poll(self) -> list[tuple[int, GenerationResult]]:
        queue, self._queue = self._queue, []
        if not queue:
            return []
        results = self.engine.generate([r for _, r in queue])
        if len(results) != len(queue):
            raise RuntimeError(f"engine returned {len(results)} results for {len(queue)} requests")
        return [(t, res) for (t, _), res in zip(queue, results)]

    def pending(self) -> int:
        return len(self._queue)


def stream_of(engine: Any) -> Any:
    """``engine`` itself when it streams (has ``submit``), else a :class:`GenerateStream` over it."""
    return engine if hasattr(engine, "submit") else GenerateStream(engine)


def register_backend(name: str) -> Callable[[type[Engine]], type[Engine]]:
    """Class decorator registering an :class:`Engine` subclass under ``name``."""

    def decorate(cls: type[Engine]) -> type[Engine]:
        cls.backend = name
        _BACKENDS[name] = cls
        return cls

    return decorate


def available_backends() -> list[str]:
    """Names accepted by :func:`build_engine` (built-in and registered)."""
    return sorted(set(_BACKENDS) | set(_BUILTIN_MODULES))


def get_backend(name: str) -> type[Engine]:
    """Return the engine class registered as ``name``.

    Raises:
        ValueError: unknown backend name.
        ImportError: the backend's library (e.g. vllm) is not installed.
    """
    if name not in _BACKENDS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _BACKENDS:
        raise ValueError(f"unknown engine backend {name!r}; available: {available_backends()}")
    return _BACKENDS[name]


#: Options a config's ``engine:`` section may set, per built-in backend: the backend's
#: constructor keywords (a loaded ``tokenizer`` object is for library callers only) and, for
#: vLLM, the ``vllm.LLM`` keywords meds3 forwards (:data:`VLLM_LLM_OPTIONS`). Anything else is
#: refused by name, so a typo or an option that changes what code runs never reaches the engine.
TRANSFORMERS_OPTIONS = frozenset({
    "device", "dtype", "max_batch_size", "kv_cache_mb", "max_prefill_tokens", "prefix_cache_mb",
    "cache_generated", "share_prefill", "seed", "attn_implementation", "trust_remote_code", "batch_invariant",
    "admit_wait"})
VLLM_OWN_OPTIONS = frozenset({
    "dtype", "enable_lora", "max_lora_rank", "max_loras", "max_model_len", "gpu_memory_utilization",
    "enforce_eager", "seed", "trust_remote_code", "batch_invariant", "multiprocessing"})
VLLM_LLM_OPTIONS = frozenset({
    "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "distributed_executor_backend",
    "quantization", "kv_cache_dtype", "kv_cache_memory_bytes", "max_num_seqs", "max_num_batched_tokens",
    "enable_chunked_prefill", "cpu_offload_gb", "block_size", "max_cpu_loras", "num_gpu_blocks_override",
    "tokenizer_mode", "revision", "tokenizer_revision", "code_revision", "disable_custom_all_reduce",
    "disable_log_stats", "load_format", "download_dir", "max_logprobs", "enable_sleep_mode",
    "compilation_config"})
#: The openai backend's constructor keywords (``tokenizer`` here is a path or alias).
OPENAI_OPTIONS = frozenset({
    "base_url", "api_key", "tokenizer", "adapters", "load_adapters", "max_concurrency", "max_retries",
    "retry_backoff", "timeout", "seed", "trust_remote_code"})
BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    "transformers": TRANSFORMERS_OPTIONS,
    "vllm": VLLM_OWN_OPTIONS | VLLM_LLM_OPTIONS,
    "openai": OPENAI_OPTIONS,
}


def engine_option_names(backend: str) -> frozenset[str] | None:
    """Options ``engine:`` may set for ``backend``; ``None`` when any are accepted (a registered
    backend whose constructor takes ``**kwargs``)."""
    import inspect

    if backend in BACKEND_OPTIONS:
        return BACKEND_OPTIONS[backend]
    if backend not in _BACKENDS:
        return None  # an unknown backend is refused by name where it is built
    params = inspect.signature(_BACKENDS[backend].__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.name not in ("self", "model")
                     and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def check_engine_options(backend: str, options: dict[str, Any]) -> None:
    """Refuse engine options the backend does not know.

    Raises:
        ConfigError: naming the first unknown key (``engine.<key>``) and listing the allowed ones.
    """
    from meds3.config import ConfigError

    allowed = engine_option_names(backend)
    if allowed is None:
        return
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        raise ConfigError(f"engine.{unknown[0]}: not an option of the {backend} backend; "
                          f"allowed: {', '.join(sorted(allowed))}")
    trust = options.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ConfigError(f"engine.trust_remote_code: expected true or false, got {trust!r}")


def build_engine(model: str | os.PathLike, backend: str = "transformers", **options: Any) -> Engine:
    """Build a generation engine.

    Args:
        model: a local directory, an embedded alias (``smollm2-135m-instruct``,
            ``tiny-random-llama``) or a Hugging Face id (see ``resolve_model``).
        backend: ``"transformers"`` (default, CPU or CUDA), ``"vllm"`` or ``"openai"`` (a running
            OpenAI-compatible server).
        **options: passed to the backend's constructor (see its docstring).

    Returns:
        A ready :class:`Engine`.

    Raises:
        ValueError: unknown backend or option.
        ImportError: the backend's library is missing.
        ModelResolutionError: the model cannot be found or built.
    """
    return get_backend(backend)(model, **options)
