"""Generation engines: one interface (:class:`Engine`), backends registered by name.

>>> from meds3.engines import build_engine, GenerationRequest, SamplingParams
>>> engine = build_engine("smollm2-135m-instruct")            # transformers backend
>>> prompt = engine.chat_prompt([{"role": "user", "content": "What causes scurvy?"}])
>>> [result] = engine.generate([GenerationRequest(prompt=prompt, n=3,
...     params=SamplingParams(temperature=0.7, max_new_tokens=64, stop=["Step 2:"], seed=1))])

Backends: ``transformers`` (default, ``hf_backend``), ``vllm`` (``vllm_backend``) and ``openai``
(``openai_backend``: a running OpenAI-compatible server); the last two are imported only when asked
for. Models: see :func:`resolve_model`.
"""

from meds3.engines.base import (
    Engine,
    available_backends,
    build_engine,
    get_backend,
    register_backend,
)
from meds3.engines.models import ModelResolutionError, embedded_aliases, resolve_model
from meds3.engines.types import GenerationRequest, GenerationResult, Sample, SamplingParams

__all__ = [
    "Engine", "GenerationRequest", "GenerationResult", "ModelResolutionError", "Sample",
    "SamplingParams", "available_backends", "build_engine", "embedded_aliases", "get_backend",
    "register_backend", "resolve_model",
]
