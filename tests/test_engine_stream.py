"""Streaming contract (``Engine.submit`` / ``poll`` / ``pending``), run on ``tiny-random-llama``.

The same tests run on the transformers engine, on the base class's default implementation
(``generate`` once per poll, over a transformers engine) and (marked ``vllm``) on the vLLM
engine and on the openai backend over a real vLLM server (tests/openai_server.py). Streaming
engines (those overriding ``poll``) must also return short requests before long ones and let
late submissions join the running batch; the default returns everything queued in one poll, so
there only "no later than" holds.
"""

from __future__ import annotations

import weakref

import pytest
from model_paths import model_path

from meds3.engines import (
    GenerationRequest,
    SamplingParams,
    build_engine,
)
from meds3.engines.base import Engine

# openai: the openai backend on a real vLLM server (tests/openai_server.py), also marked vllm
BACKENDS = ["transformers", "default", pytest.param("vllm", marks=pytest.mark.vllm),
            pytest.param("openai", marks=[pytest.mark.vllm, pytest.mark.slow])]
PROMPTS = ["Hello there", "The patient is a 45-year-old man with chest pain and", "Step 1:"]
TOO_LONG = 5000  # prompt tokens: past the tiny model's context (2048) and the vLLM engine's (512)

_issued: weakref.WeakKeyDictionary[Engine, set[int]] = weakref.WeakKeyDictionary()


class DefaultStream(Engine):
    """A transformers engine seen through the base class's streaming (its ``generate`` only)."""

    backend = "default"

    def __init__(self, inner: Engine):
        self.inner, self.tokenizer, self.model_path = inner, inner.tokenizer, inner.model_path

    def generate(self, requests):
        return self.inner.generate(requests)

    def close(self):
        self.inner.close()


def greedy(n_tokens: int, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=n_tokens, **kw)


def req(prompt: str, params: SamplingParams, rid: str, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=params, request_id=rid, **kw)


def streams(engine: Engine) -> bool:
    """The engine decodes in its own loop (it does not run one ``generate`` per poll)."""
    return type(engine).poll is not Engine.poll


def submit(engine: Engine, requests) -> list[int]:
    """``engine.submit``, checking one ticket per request and no ticket issued twice."""
    before = engine.pending()
    tickets = engine.submit(requests)
    assert len(tickets) == len(requests) and all(isinstance(t, int) for t in tickets)
    issued = _issued.setdefault(engine, set())
    assert len(set(tickets)) == len(tickets) and issued.isdisjoint(tickets)
    issued.update(tickets)
    assert engine.pending() == before + len(requests)
    return tickets


def drain(engine: Engine) -> list[list]:
    """Poll until nothing is pending; return each poll's ``(ticket, result)`` list."""
    polls = []
    while engine.pending():
        before = engine.pending()
        got = engine.poll()
        assert got, "poll() returned nothing while requests were pending"
        assert engine.pending() == before - len(got)
        polls.append(got)
    assert engine.poll() == []
    return polls


def by_ticket(polls) -> dict:
    out = {}
    for got in polls:
        for ticket, result in got:
            assert ticket not in out, f"ticket {ticket} returned twice"
            out[ticket] = result
    return out


def poll_index(polls, ticket: int) -> int:
    return next(i for i, got in enumerate(polls) if ticket in dict(got))


def samples(result) -> list[tuple]:
    return [(s.text, s.token_ids, s.finish_reason, s.stop_reason) for s in result.samples]


@pytest.fixture(scope="module")
def tiny_path():
    return model_path("tiny-random-llama")


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tiny_path):
    if request.param == "vllm":
        yield request.getfixturevalue("tiny_vllm_engine")  # the session's (conftest): not closed here
        return
    elif request.param == "openai":
        server = request.getfixturevalue("openai_server")
        eng = build_engine("tiny", backend="openai", base_url=server.base_url, tokenizer=str(tiny_path))
    else:
        # no prefix store: a hit prefills only a suffix, whose rounding can change a seeded
        # sample, so generate() twice on one list would differ before any streaming is involved
        eng = build_engine(tiny_path, backend="transformers", prefix_cache_mb=0)
        if request.param == "default":
            eng = DefaultStream(eng)
    yield eng
    eng.close()


def test_empty_engine_polls_nothing(engine):
    assert engine.pending() == 0
    assert engine.poll() == []
    assert submit(engine, []) == []
    assert engine.poll() == [] and engine.pending() == 0


def test_seeded_stream_matches_generate(engine):
    reqs = [req(p, SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=6 + 2 * i, seed=100 + i),
                f"s{i}", n=2)
            for i, p in enumerate(PROMPTS)]
    reqs.append(req(PROMPTS[0], greedy(5), "g"))
    want = engine.generate(reqs)
    tickets = submit(engine, reqs)
    got = by_ticket(drain(engine))
    assert sorted(got) == sorted(tickets)
    for ticket, request, expected in zip(tickets, reqs, want):
        result = got[ticket]
        assert result.request_id == request.request_id
        assert result.prompt_token_ids == expected.prompt_token_ids
        assert samples(result) == samples(expected)


def test_results_come_in_finishing_order(engine):
    long_req = req(PROMPTS[1], greedy(40, ignore_eos=True), "long")
    short_req = req(PROMPTS[0], greedy(2), "short")
    long_t, short_t = submit(engine, [long_req, short_req])
    polls = drain(engine)
    got = by_ticket(polls)
    assert sorted(got) == sorted([long_t, short_t])
    assert got[long_t].request_id == "long" and got[long_t].samples[0].num_tokens == 40
    assert got[short_t].request_id == "short" and got[short_t].samples[0].num_tokens <= 2
    assert poll_index(polls, short_t) <= poll_index(polls, long_t)
    if streams(engine):
        assert dict(polls[0]).keys() == {short_t}
        assert poll_index(polls, short_t) < poll_index(polls, long_t)


def test_submissions_join_the_running_batch(engine):
    # long enough that the late requests, submitted over HTTP after a poll, still join it on a loaded
    # machine: with 30 tokens the openai server finished it first under the other xdist worker's load
    first_reqs = [req(PROMPTS[1], greedy(200, ignore_eos=True), "long"), req(PROMPTS[0], greedy(2), "a")]
    late_reqs = [req(PROMPTS[2], greedy(3), "b"), req(PROMPTS[0], greedy(5), "c")]
    alone = engine.generate(first_reqs + late_reqs)  # greedy: what each request gives anyway
    first = submit(engine, first_reqs)
    polls = [engine.poll()]
    assert polls[0] and dict(polls[0]).keys() <= set(first)
    assert engine.pending() == 2 - len(polls[0])
    late = submit(engine, late_reqs)
    assert min(late) > max(first)
    assert engine.pending() == 4 - len(polls[0])
    polls += drain(engine)
    got = by_ticket(polls)
    assert sorted(got) == sorted(first + late)
    for ticket, request, expected in zip(first + late, first_reqs + late_reqs, alone):
        assert got[ticket].request_id == request.request_id
        assert samples(got[ticket]) == samples(expected)
    if streams(engine):  # the late short requests did not wait for the long one
        assert all(poll_index(polls, t) < poll_index(polls, first[0]) for t in late)


def test_bad_request_queues_nothing(engine):
    ok = submit(engine, [req(PROMPTS[0], greedy(3), "ok")])
    too_long = GenerationRequest(prompt_token_ids=engine.encode(" the") * TOO_LONG, params=greedy(4))
    try:
        engine.submit([req(PROMPTS[2], greedy(3), "fine"), too_long])
    except ValueError:
        pass
    else:
        assert type(engine).submit is Engine.submit, "submit queued a request longer than the context"
        with pytest.raises(ValueError):
            drain(engine)
        assert engine.pending() == 0  # documented: the default stream checks requests when polled
        return
    assert engine.pending() == 1
    if engine.backend == "vllm" and not engine.enable_lora:
        with pytest.raises(ValueError, match="enable_lora"):
            engine.submit([req(PROMPTS[2], greedy(3), "fine"),
                           req(PROMPTS[0], greedy(3), "lora", adapter="/nonexistent/adapter")])
        assert engine.pending() == 1
    got = by_ticket(drain(engine))
    assert list(got) == ok and got[ok[0]].request_id == "ok"


def test_greedy_n3_streams_one_sample_three_times(engine):
    request = req(PROMPTS[1], greedy(8), "n3", n=3)
    (ticket,) = submit(engine, [request])
    got = by_ticket(drain(engine))
    result = got[ticket]
    assert len(result.samples) == 3 and len(set(map(tuple, [s.token_ids for s in result.samples]))) == 1
    assert samples(result) == samples(engine.generate([request])[0])
    assert result.prompt_tokens_computed + result.prompt_tokens_cached == 3 * result.prompt_tokens


def test_generate_while_pending_refuses_or_keeps_the_stream(engine):
    """Either generate raises RuntimeError and leaves the stream alone (vLLM does), or it
    generates beside it (the default); the queued request comes out either way."""
    (ticket,) = submit(engine, [req(PROMPTS[0], greedy(4), "queued")])
    try:
        results = engine.generate([req(PROMPTS[2], greedy(3), "direct")])
    except RuntimeError:
        assert engine.pending() == 1
    else:
        assert engine.backend != "vllm", "the vLLM engine documents a RuntimeError here"
        assert [r.request_id for r in results] == ["direct"]
    got = by_ticket(drain(engine))
    assert list(got) == [ticket] and got[ticket].request_id == "queued"


def test_poll_error_drops_every_ticket_and_engine_stays_usable(engine, monkeypatch):
    request = req(PROMPTS[1], greedy(12, ignore_eos=True), "r")
    want = engine.generate([request])[0]
    calls = {"n": 0}
    fail_at = 3
    if engine.backend == "vllm":
        target, name = engine.llm.llm_engine, "step"
    elif engine.backend == "openai":  # one call per request: fail the first, before it is sent
        target, name, fail_at = engine.client.completions, "create", 1
    else:  # the transformers model, under either streaming implementation
        target = (engine.inner if isinstance(engine, DefaultStream) else engine).model
        name = "forward"
    real = getattr(target, name)

    def fail_on_call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fail_on_call)
    submit(engine, [request, req(PROMPTS[0], greedy(20, ignore_eos=True), "r2")])
    with pytest.raises(RuntimeError, match="injected failure"):
        drain(engine)
    assert engine.pending() == 0 and engine.poll() == []
    monkeypatch.undo()
    if engine.backend == "vllm":
        assert not engine.llm.llm_engine.has_unfinished_requests()
    (ticket,) = submit(engine, [request])
    got = by_ticket(drain(engine))
    assert samples(got[ticket]) == samples(want)
    assert samples(engine.generate([request])[0]) == samples(want)
