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

    def close(self) -> None:
        """Release the model and worker processes (no-op by default)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def build_engine(model: str | os.PathLike, backend: str = "transformers", **options: Any) -> Engine:
    """Build a generation engine.

    Args:
        model: a local directory, an embedded alias (``smollm2-135m-instruct``,
            ``tiny-random-llama``) or a Hugging Face id (see ``resolve_model``).
        backend: ``"transformers"`` (default, CPU or CUDA) or ``"vllm"``.
        **options: passed to the backend's constructor (see its docstring).

    Returns:
        A ready :class:`Engine`.

    Raises:
        ValueError: unknown backend or option.
        ImportError: the backend's library is missing.
        ModelResolutionError: the model cannot be found or built.
    """
    return get_backend(backend)(model, **options)
