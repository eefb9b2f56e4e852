"""Budget forcing (s1, m1): control how long a model thinks before it answers.

Thinking is the text before the *end-of-thinking marker*. With the MedS3 step format
(the default) the steps are the thinking and the marker is the answer cue
``"The answer is"``; for models that wrap thinking in delimiters set
``think_end="</think>"`` and the marker is that delimiter.

- **Maximum** (``max_thinking_tokens``): thinking stops at the budget; the forced text
  ``think_end + answer_cue`` is appended and the model writes a short answer
  (``answer_max_tokens``).
- **Minimum** (``min_thinking_tokens``): when the model writes the marker before the
  minimum, the marker is removed and ``wait_text`` is appended instead, so it keeps
  thinking; at most ``max_waits`` times per response.

Generation runs in rounds over every open response of every question: **one engine call per
round**. Continuations are sent as token ids (prompt ids + every generated or inserted id),
so a response's token sequence is exact; removing a marker cuts the tokens that spelled it.
Without any budget the whole response is one plain sampling call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Sequence

from meds3.engines.types import GenerationRequest, SamplingParams, sample_seed

logger = logging.getLogger(__name__)


@dataclass
class BudgetConfig:
    """Budget forcing settings (all off by default: plain sampling).

    Attributes:
        max_thinking_tokens: most model tokens spent thinking (None: no maximum; the
            sampler's ``max_new_tokens`` caps the response instead).
        min_thinking_tokens: thinking shorter than this is extended with ``wait_text``
            (None: no minimum).
        max_waits: at most this many ``wait_text`` insertions per response (s1's k).
        think_end: end-of-thinking delimiter; ``""`` for the MedS3 step format, where the
            answer cue itself ends thinking.
        answer_cue: text that makes the model state its answer, appended after
            ``think_end`` when thinking is stopped at the maximum.
        wait_text: text appended in place of a suppressed end of thinking.
        answer_max_tokens: most tokens of the answer written after a forced or natural
            end of thinking.
    """

    max_thinking_tokens: Optional[int] = None
    min_thinking_tokens: Optional[int] = None
    max_waits: int = 1
    think_end: str = ""
    answer_cue: str = "\n\nThe answer is"
    wait_text: str = "Wait"
    answer_max_tokens: int = 32

    def __post_init__(self) -> None:
        for name in ("max_thinking_tokens", "min_thinking_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if (self.max_thinking_tokens is not None and self.min_thinking_tokens is not None
                and self.min_thinking_tokens > self.max_thinking_tokens):
            raise ValueError(f"min_thinking_tokens ({self.min_thinking_tokens}) exceeds "
                             f"max_thinking_tokens ({self.max_thinking_tokens})")
        if self.max_waits < 0:
            raise ValueError(f"max_waits must be >= 0, got {self.max_waits}")
        if self.answer_max_tokens < 1:
            raise ValueError(f"answer_max_tokens must be >= 1, got {self.answer_max_tokens}")
        if not self.end_marker:
            raise ValueError("answer_cue must not be blank when think_end is empty")
        if self.min_thinking_tokens is not None and not self.wait_text:
            raise ValueError("wait_text must not be empty when min_thinking_tokens is set")

    @property
    def active(self) -> bool:
        """Whether any forcing applies (otherwise responses are sampled in one plain call)."""
        return self.max_thinking_tokens is not None or self.min_thinking_tokens is not None

    @property
    def end_marker(self) -> str:
        """The text whose appearance ends thinking: ``think_end``, else the answer cue."""
        return self.think_end or self.answer_cue.strip()

    @property
    def forced_text(self) -> str:
        """What is appended when thinking is stopped at the maximum."""
        return self.think_end + self.answer_cue


@dataclass(kw_only=True)
class TokenUsage:
    """Token accounting of one response, shared by :class:`Generation` and the sampler's
    ``Response`` (keyword-only, so each keeps its own positional fields first).

    Attributes:
        thinking_tokens: tokens the model generated while thinking.
        answer_tokens: tokens the model generated after the end of thinking (0 without
            forcing: then every token counts as thinking).
        inserted_tokens: tokens of inserted texts (``wait_text``, the forced text); not generated.
        forced_stop: thinking was cut at ``max_thinking_tokens``.
        waits: ``wait_text`` insertions.
        finish_reason: how the last engine call of the response ended (``eos``, ``length``, ``stop``).
    """

    thinking_tokens: int = 0
    answer_tokens: int = 0
    inserted_tokens: int = 0
    forced_stop: bool = False
    waits: int = 0
    finish_reason: str = "eos"

    @property
    def num_tokens(self) -> int:
        """Tokens the model generated (what the response cost)."""
        return self.thinking_tokens + self.answer_tokens

    def usage(self) -> "TokenUsage":
        """The accounting alone (a plain :class:`TokenUsage` copy)."""
        return TokenUsage(**{name: getattr(self, name) for name in USAGE_FIELDS})


#: The fields of :class:`TokenUsage`, in order.
USAGE_FIELDS = tuple(f.name for f in fields(TokenUsage))


@dataclass
class Generation(TokenUsage):
    """One response as generated, with its token accounting (:class:`TokenUsage`).

    Attributes:
        text: the response text (model output and inserted texts, decoded).
        token_ids: every token after the prompt, generated or inserted, in order.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)


@dataclass
class _Open:
    """A response still being generated."""

    prompt_ids: list[int]
    seed: Optional[int]
    gen: Generation
    phase: str = "think"  # "think" or "answer"
    rounds: int = 0


def _encode(engine: Any, text: str) -> list[int]:
    if hasattr(engine, "encode"):
        return list(engine.encode(text))
    return list(engine.tokenizer.encode(text, add_special_tokens=False))


def _decode(engine: Any, ids: Sequence[int]) -> str:
    if hasattr(engine, "decode"):
        return engine.decode(list(ids))
    return engine.tokenizer.decode(list(ids), skip_special_tokens=True)


def cut_to_text(engine: Any, token_ids: Sequence[int], text: str) -> list[int]:
    """Token ids spelling exactly ``text``, a prefix of what ``token_ids`` decode to.

    Keeps the longest prefix of ``token_ids`` whose decoding is a prefix of ``text`` and
    encodes the rest of ``text`` (a token that straddles ``text`` and a stop string).
    """
    ids = list(token_ids)
    keep = 0
    for k in range(len(ids), -1, -1):
        if text.startswith(_decode(engine, ids[:k])):
            keep = k
            break
    rest = text[len(_decode(engine, ids[:keep])):]
    return ids[:keep] + (_encode(engine, rest) if rest else [])


def generate_with_budget(engine: Any, prompts: Sequence[str], n: int, params: SamplingParams,
                         budget: BudgetConfig | None = None, adapter: Optional[str] = None,
                         seeds: Sequence[Optional[int]] | None = None) -> list[list[Generation]]:
    """Sample ``n`` responses per prompt, with budget forcing when ``budget`` is active.

    Args:
        engine: an :class:`meds3.engines.Engine` (``generate``, ``encode``/``decode`` or a
            ``tokenizer``).
        prompts: prompt texts, one per question.
        n: responses per prompt.
        params: sampling parameters; ``max_new_tokens`` caps thinking when there is no
            maximum budget; its ``stop`` strings are kept.
        budget: forcing settings (None or inactive: one plain call).
        adapter: LoRA adapter path for every request.
        seeds: one seed per prompt (None: the engine draws).

    Returns:
        ``n`` generations per prompt, in prompt order.
    """
    budget = budget or BudgetConfig()
    seeds = list(seeds) if seeds is not None else [params.seed] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    if not prompts:
        return []
    if not budget.active:
        reqs = [GenerationRequest(prompt=p, n=n, params=_with(params, seed=s), adapter=adapter)
                for p, s in zip(prompts, seeds)]
        results = engine.generate(reqs)
        return [[Generation(s.text, list(s.token_ids), thinking_tokens=s.num_tokens, finish_reason=s.finish_reason)
                 for s in r.samples] for r in results]
    return _forced(engine, prompts, n, params, budget, adapter, seeds)


def _with(params: SamplingParams, **changes: Any) -> SamplingParams:
    data = {**params.__dict__, **changes}
    return SamplingParams(**data)


def _think_cap(budget: BudgetConfig, params: SamplingParams) -> int:
    return budget.max_thinking_tokens if budget.max_thinking_tokens is not None else params.max_new_tokens


def _forced(engine: Any, prompts: Sequence[str], n: int, params: SamplingParams, budget: BudgetConfig,
            adapter: Optional[str], seeds: Sequence[Optional[int]]) -> list[list[Generation]]:
    cap = _think_cap(budget, params)
    stop = [*params.stop, budget.end_marker]
    first = [GenerationRequest(prompt=p, n=n, params=_with(params, seed=s, stop=stop, max_new_tokens=cap,
                                                           include_stop_str_in_output=False), adapter=adapter)
             for p, s in zip(prompts, seeds)]
    results = engine.generate(first)
    out: list[list[Generation]] = []
    open_: list[_Open] = []
    for r, s in zip(results, seeds):
        gens = []
        for j, sample in enumerate(r.samples):
            item = _Open(list(r.prompt_token_ids), None if s is None else sample_seed(s, j), Generation(""))
            _apply(engine, item, sample, budget, cap)
            gens.append(item.gen)
            if item.phase != "done":
                open_.append(item)
        out.append(gens)
    while open_:
        reqs = []
        for item in open_:
            item.rounds += 1
            seed = None if item.seed is None else sample_seed(item.seed, 1000 + item.rounds)
            if item.phase == "think":
                p = _with(params, seed=seed, stop=stop, max_new_tokens=cap - item.gen.thinking_tokens,
                          include_stop_str_in_output=False)
            else:
                p = _with(params, seed=seed, stop=list(params.stop), max_new_tokens=budget.answer_max_tokens,
                          include_stop_str_in_output=False)
            reqs.append(GenerationRequest(prompt_token_ids=item.prompt_ids + item.gen.token_ids, n=1, params=p,
                                          adapter=adapter))
        results = engine.generate(reqs)
        for item, r in zip(open_, results):
            _apply(engine, item, r.samples[0], budget, cap)
        open_ = [item for item in open_ if item.phase != "done"]
    for gens in out:
        for g in gens:
            g.text = _decode(engine, g.token_ids)
    return out


def _apply(engine: Any, item: _Open, sample: Any, budget: BudgetConfig, cap: int) -> None:
    """Advance one response by the sample just generated for it."""
    gen = item.gen
    gen.finish_reason = sample.finish_reason
    if item.phase == "answer":
        gen.token_ids += list(sample.token_ids)
        gen.answer_tokens += sample.num_tokens
        item.phase = "done"
        return
    gen.thinking_tokens += sample.num_tokens
    marker = sample.finish_reason == "stop" and sample.stop_reason == budget.end_marker
    if marker:
        kept = cut_to_text(engine, sample.token_ids, sample.text)
        if (budget.min_thinking_tokens is not None and gen.thinking_tokens < budget.min_thinking_tokens
                and gen.waits < budget.max_waits and gen.thinking_tokens < cap):
            wait = _encode(engine, budget.wait_text)
            gen.token_ids += kept + wait
            gen.inserted_tokens += len(wait)
            gen.waits += 1
            return
        # The model ended thinking itself: keep the marker it wrote and let it answer.
        gen.token_ids += list(sample.token_ids)
        item.phase = "answer"
        return
    gen.token_ids += list(sample.token_ids)
    if sample.finish_reason == "length" or gen.thinking_tokens >= cap:
        if budget.max_thinking_tokens is None:
            item.phase = "done"  # only a minimum: the response cap is a plain length limit
            return
        forced = _encode(engine, budget.forced_text)
        gen.token_ids += forced
        gen.inserted_tokens += len(forced)
        gen.forced_stop = True
        item.phase = "answer"
        return
    item.phase = "done"  # EOS, or a caller's stop string
