"""Plain, JSON-serializable data that goes into and comes out of every generation engine.

They cross process boundaries (Ray workers, files), so they hold only builtins and convert
with ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FINISH_REASONS = ("stop", "eos", "length")


@dataclass
class SamplingParams:
    """How to sample one request.

    Attributes:
        temperature: softmax temperature; 0 means greedy (argmax).
        top_p: nucleus sampling mass in (0, 1]; 1 disables it.
        max_new_tokens: most tokens generated per sample.
        stop: strings that end a sample; the text is cut before the first one found (the
            MCTS uses ``["Step k:"]`` to stop a Reason step before the next step).
        seed: same seed, same prompt, same params -> the same random draws. The samples are
            bit-identical whatever else is in the batch only with the transformers engine's
            ``batch_invariant=True`` (meds3/engines/invariant.py); otherwise the batch can change
            a logit's rounding and, rarely, a sampled token. ``None`` draws a fresh seed.
        include_stop_str_in_output: keep the matched stop string at the end of ``text``.
        ignore_eos: keep generating past end-of-sequence tokens (for benchmarks).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        if not 0 <= self.temperature < float("inf"):  # why: also refuses NaN, which passes `< 0`
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")


@dataclass
class GenerationRequest:
    """One prompt to sample ``n`` times.

    Give exactly one of ``prompt`` (text taken as already formatted: it is tokenized without
    adding special tokens; use ``Engine.chat_prompt`` for chat models) or ``prompt_token_ids``
    (continues a partial assistant turn exactly, with no re-tokenization).

    Attributes:
        prompt: prompt text.
        prompt_token_ids: prompt as token ids.
        n: number of samples; they share one prefill of the prompt.
        params: sampling parameters (a dict is converted).
        adapter: path of a LoRA adapter to sample with; ``None`` samples the base model.
        request_id: caller's tag, echoed in the result.
    """

    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    n: int = 1
    params: SamplingParams = field(default_factory=SamplingParams)
    adapter: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.params, dict):
            self.params = SamplingParams(**self.params)
        if (self.prompt is None) == (self.prompt_token_ids is None):
            raise ValueError("give exactly one of prompt and prompt_token_ids")
        if self.prompt_token_ids is not None:
            self.prompt_token_ids = [int(t) for t in self.prompt_token_ids]
            if not self.prompt_token_ids:
                raise ValueError("prompt_token_ids is empty")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        """Build a request from :meth:`to_dict` output."""
        return cls(**data)


@dataclass
class Sample:
    """One generated continuation.

    Attributes:
        text: decoded text, cut before the stop string (unless asked to keep it); special
            tokens such as EOS are not in it.
        token_ids: every generated token, including the ones that spelled the stop string and
            the EOS token, so ``prompt_token_ids + token_ids`` continues exactly.
        finish_reason: ``"stop"`` (a stop string), ``"eos"`` (end-of-sequence token) or
            ``"length"`` (``max_new_tokens`` reached).
        stop_reason: the stop string that matched, when ``finish_reason == "stop"``.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    stop_reason: str | None = None

    @property
    def num_tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.token_ids)


@dataclass
class GenerationResult:
    """The samples of one request and what they cost.

    Token accounting: each of the ``n`` samples needs the ``prompt_tokens`` positions of the
    prompt in its KV cache; ``prompt_tokens_computed`` of those ``n * prompt_tokens``
    positions were run through the model for this request and ``prompt_tokens_cached`` were
    served from a cache (a shared prefill, an identical prompt earlier in the call, or the
    prefix cache). ``computed + cached == n * prompt_tokens``.
    """

    request_id: str | None
    prompt_token_ids: list[int]
    samples: list[Sample]
    prompt_tokens: int
    prompt_tokens_computed: int
    prompt_tokens_cached: int

    @property
    def generated_tokens(self) -> int:
        """Tokens generated over all samples."""
        return sum(s.num_tokens for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationResult":
        """Build a result from :meth:`to_dict` output."""
        data = dict(data)
        data["samples"] = [Sample(**s) for s in data["samples"]]
        return cls(**data)


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of a request seeded with ``seed`` (stable across runs)."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**63 - 1)
