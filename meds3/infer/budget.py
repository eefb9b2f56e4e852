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

Generation is streamed (the engine's ``submit``/``poll``): each response moves to its next phase
(think, maybe ``wait_text`` and think again, answer) as soon as its own request finishes, with no
barrier across questions, and ``on_done`` reports each question when its ``n`` responses are
complete. On a generate-only engine each poll is one ``generate`` call over every open response,
the same calls as one call per round. Continuations are sent as token ids (prompt ids + every
generated or inserted id), so a response's token sequence is exact; removing a marker cuts the
tokens that spelled it. Seeds depend only on the question, the sample and the round, so a
batch-invariant engine gives the same tokens however the requests interleave. Without any budget
the whole response is one plain sampling request per question.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional, Sequence

from meds3.engines.base import stream_of
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
    phase: str = "think"  # "think", "answer" or "done"
    rounds: int = 0
    question: int = 0  # index of its prompt


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
                         seeds: Sequence[Optional[int]] | None = None, *,
                         on_done: Optional[Callable[[int, list[Generation]], None]] = None) -> list[list[Generation]]:
    """Sample ``n`` responses per prompt, with budget forcing when ``budget`` is active.

    Requests go through the engine's stream (:func:`meds3.engines.base.stream_of`): each
    response moves to its next phase as soon as its own request finishes, without waiting for
    the other questions. With a generate-only engine every poll is one ``generate`` call over
    all open responses, so the calls are those of one call per round.

    Args:
        engine: an :class:`meds3.engines.Engine` (``submit``/``poll`` or ``generate``;
            ``encode``/``decode`` or a ``tokenizer``). Not to be polled by anyone else meanwhile.
        prompts: prompt texts, one per question.
        n: responses per prompt.
        params: sampling parameters; ``max_new_tokens`` caps thinking when there is no
            maximum budget; its ``stop`` strings are kept.
        budget: forcing settings (None or inactive: one plain request per prompt).
        adapter: LoRA adapter path for every request.
        seeds: one seed per prompt (None: the engine draws).
        on_done: ``on_done(index, generations)`` once per prompt, as soon as its ``n``
            generations are complete (texts decoded), in completion order.

    Returns:
        ``n`` generations per prompt, in prompt order.

    Raises:
        RuntimeError: the engine stopped returning results for requests still open.
    """
    budget = budget or BudgetConfig()
    seeds = list(seeds) if seeds is not None else [params.seed] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    if not prompts:
        return []
    stream = stream_of(engine)
    out: list[list[Generation]] = [[] for _ in prompts]
    if not budget.active:
        def plain(index: int, result: Any) -> list[tuple[Any, GenerationRequest]]:
            out[index] = [Generation(s.text, list(s.token_ids), thinking_tokens=s.num_tokens,
                                     finish_reason=s.finish_reason) for s in result.samples]
            if on_done is not None:
                on_done(index, out[index])
            return []

        reqs = [GenerationRequest(prompt=p, n=n, params=_with(params, seed=s), adapter=adapter)
                for p, s in zip(prompts, seeds)]
        _drive(stream, list(enumerate(reqs)), plain)
        return out
    return _forced(engine, stream, prompts, n, params, budget, adapter, seeds, on_done)


def _drive(stream: Any, first: list[tuple[Any, GenerationRequest]],
           handle: Callable[[Any, Any], list[tuple[Any, GenerationRequest]]]) -> None:
    """Submit ``first`` (``(key, request)`` pairs) and poll until every request is answered:
    ``handle(key, result)`` consumes each result and returns the follow-up pairs, submitted
    together once the poll's results are handled (one call per round on a generate-only engine)."""
    waiting: dict[int, Any] = {}

    def submit(pairs: list[tuple[Any, GenerationRequest]]) -> None:
        if pairs:
            tickets = stream.submit([req for _, req in pairs])
            waiting.update(zip(tickets, [key for key, _ in pairs]))

    submit(first)
    while waiting:
        finished = stream.poll()
        if not finished and not stream.pending():
            raise RuntimeError(f"the engine has nothing pending but {len(waiting)} requests are unanswered")
        follow: list[tuple[Any, GenerationRequest]] = []
        for ticket, result in finished:
            key = waiting.pop(ticket, _STALE)
            if key is _STALE:  # left over from an earlier caller that failed mid-way
                logger.debug("ignoring the result of ticket %d: not one of ours", ticket)
                continue
            follow += handle(key, result)
        submit(follow)


_STALE = object()


def _with(params: SamplingParams, **changes: Any) -> SamplingParams:
    data = {**params.__dict__, **changes}
    return SamplingParams(**data)


def _think_cap(budget: BudgetConfig, params: SamplingParams) -> int:
    return budget.max_thinking_tokens if budget.max_thinking_tokens is not None else params.max_new_tokens


def _forced(engine: Any, stream: Any, prompts: Sequence[str], n: int, params: SamplingParams, budget: BudgetConfig,
            adapter: Optional[str], seeds: Sequence[Optional[int]],
            on_done: Optional[Callable[[int, list[Generation]], None]]) -> list[list[Generation]]:
    cap = _think_cap(budget, params)
    stop = [*params.stop, budget.end_marker]
    out: list[list[Generation]] = [[] for _ in prompts]
    left = [n] * len(prompts)  # responses of each prompt still open

    def next_request(item: _Open) -> GenerationRequest:
        item.rounds += 1
        seed = None if item.seed is None else sample_seed(item.seed, 1000 + item.rounds)
        if item.phase == "think":
            p = _with(params, seed=seed, stop=stop, max_new_tokens=cap - item.gen.thinking_tokens,
                      include_stop_str_in_output=False)
        else:
            p = _with(params, seed=seed, stop=list(params.stop), max_new_tokens=budget.answer_max_tokens,
                      include_stop_str_in_output=False)
        return GenerationRequest(prompt_token_ids=item.prompt_ids + item.gen.token_ids, n=1, params=p,
                                 adapter=adapter)

    def advance(item: _Open, sample: Any) -> list[tuple[Any, GenerationRequest]]:
        _apply(engine, item, sample, budget, cap)
        if item.phase != "done":
            return [(item, next_request(item))]
        left[item.question] -= 1
        if not left[item.question]:
            for g in out[item.question]:
                g.text = _decode(engine, g.token_ids)
            if on_done is not None:
                on_done(item.question, out[item.question])
        return []

    def handle(key: Any, result: Any) -> list[tuple[Any, GenerationRequest]]:
        if isinstance(key, _Open):
            return advance(key, result.samples[0])
        s = seeds[key]
        items = [_Open(list(result.prompt_token_ids), None if s is None else sample_seed(s, j), Generation(""),
                       question=key) for j in range(len(result.samples))]
        out[key] = [item.gen for item in items]
        left[key] = len(items)
        follow: list[tuple[Any, GenerationRequest]] = []
        for item, sample in zip(items, result.samples):
            follow += advance(item, sample)
        return follow

    first = [(i, GenerationRequest(prompt=p, n=n, params=_with(params, seed=s, stop=stop, max_new_tokens=cap,
                                                               include_stop_str_in_output=False), adapter=adapter))
             for i, (p, s) in enumerate(zip(prompts, seeds))]
    _drive(stream, first, handle)
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
