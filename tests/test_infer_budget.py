"""Budget forcing: exact token sequences with a character-level scripted engine, then the
same path on ``tiny-random-llama`` with both engines."""

from __future__ import annotations

import random

import pytest
from model_paths import model_path

from meds3.engines.types import GenerationRequest, GenerationResult, Sample, SamplingParams, sample_seed
from meds3.infer import budget as budget_module
from meds3.infer.budget import BudgetConfig, Generation, cut_to_text, generate_with_budget

EOS = 0


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


class CharEngine:
    """One token per character (id = code point, 0 = EOS). What it writes depends only on how
    the prompt ends, so each continuation round is predictable; stop strings, max_new_tokens
    and EOS behave as in the real engines (the stop string's tokens stay in ``token_ids``)."""

    tokenizer = None
    SCRIPT = {"Step 1: ": "think. The answer is C.", "Wait": ", more. The answer is B.",
              "The answer is": " B.", "Answer:": " B."}

    def __init__(self):
        self.calls: list[list] = []

    def encode(self, text):
        return ids(text)

    def decode(self, token_ids):
        return "".join(chr(t) for t in token_ids if t != EOS)

    def generate(self, requests):
        self.calls.append(requests)
        return [self._one(r) for r in requests]

    def script(self, prompt, seed):
        """What the model writes after ``prompt`` (``seed``: the sample's seed)."""
        return next(v for k, v in self.SCRIPT.items() if prompt.endswith(k))

    def _one(self, req):
        prompt_ids = req.prompt_token_ids or ids(req.prompt)
        prompt = self.decode(prompt_ids)
        p = req.params
        samples = []
        for j in range(req.n):
            want = self.script(prompt, None if p.seed is None else sample_seed(p.seed, j))
            hits = [(want.find(s), s) for s in p.stop if s in want]
            if hits:
                pos, s = min(hits)
                if pos + len(s) <= p.max_new_tokens:
                    samples.append(Sample(want[:pos], ids(want[:pos + len(s)]), "stop", s))
                    continue
            if len(want) + 1 > p.max_new_tokens:
                samples.append(Sample(want[:p.max_new_tokens], ids(want[:p.max_new_tokens]), "length"))
            else:
                samples.append(Sample(want, ids(want) + [EOS], "eos"))
        return GenerationResult(req.request_id, prompt_ids, samples, len(prompt_ids), len(prompt_ids), 0)


PROMPT = "Q?\n\nStep 0: Let's break down this problem step by step.\n\nStep 1: "


def run(budget, n=1, max_new_tokens=64):
    engine = CharEngine()
    [gens] = generate_with_budget(engine, [PROMPT], n, SamplingParams(temperature=0, max_new_tokens=max_new_tokens),
                                  budget, seeds=[3])
    return engine, gens


def test_no_budget_is_one_plain_call():
    engine, [g, g2] = run(None, n=2)
    assert g2.token_ids == g.token_ids
    assert len(engine.calls) == 1 and engine.calls[0][0].params.stop == []
    assert g.text == "think. The answer is C."
    assert g.token_ids == ids("think. The answer is C.") + [EOS]
    assert (g.thinking_tokens, g.answer_tokens, g.inserted_tokens, g.forced_stop, g.waits) == (24, 0, 0, False, 0)


def test_maximum_truncates_at_the_budget_then_forces_the_answer():
    engine, [g] = run(BudgetConfig(max_thinking_tokens=4))
    assert g.token_ids == ids("thin") + ids("\n\nThe answer is") + ids(" B.") + [EOS]
    assert g.text == "thin\n\nThe answer is B."
    assert (g.thinking_tokens, g.answer_tokens, g.inserted_tokens) == (4, 4, 15)
    assert g.forced_stop and g.waits == 0 and g.num_tokens == 8
    assert len(engine.calls) == 2
    first, second = engine.calls[0][0], engine.calls[1][0]
    assert first.params.max_new_tokens == 4 and first.params.stop == ["The answer is"]
    assert second.prompt_token_ids == ids(PROMPT) + ids("thin\n\nThe answer is")
    assert second.params.max_new_tokens == 32 and second.params.stop == []


def test_thinking_delimiter_is_appended_before_the_answer_cue():
    _, [g] = run(BudgetConfig(max_thinking_tokens=2, think_end="</think>", answer_cue="\nFinal Answer:"))
    assert g.token_ids == ids("th</think>\nFinal Answer:") + ids(" B.") + [EOS]
    assert g.forced_stop and g.inserted_tokens == len("</think>\nFinal Answer:")


def test_natural_end_within_the_budget_keeps_the_models_own_text():
    _, [g] = run(BudgetConfig(max_thinking_tokens=40))
    assert g.token_ids == ids("think. The answer is") + ids(" B.") + [EOS]
    assert (g.thinking_tokens, g.answer_tokens, g.inserted_tokens, g.forced_stop) == (20, 4, 0, False)


def test_minimum_suppresses_the_end_and_appends_wait_once():
    engine, [g] = run(BudgetConfig(min_thinking_tokens=30, max_waits=1))
    assert g.text == "think. Wait, more. The answer is B."
    assert g.token_ids == ids("think. ") + ids("Wait") + ids(", more. The answer is") + ids(" B.") + [EOS]
    assert (g.thinking_tokens, g.answer_tokens, g.inserted_tokens, g.waits) == (41, 4, 4, 1)
    assert len(engine.calls) == 3


def test_wait_is_inserted_at_most_k_times():
    _, [g] = run(BudgetConfig(min_thinking_tokens=100, max_waits=2))
    assert g.text == "think. Wait, more. Wait, more. The answer is B."
    assert g.waits == 2 and g.thinking_tokens == 20 + 21 + 21 and g.inserted_tokens == 8


def test_minimum_reached_means_no_wait():
    _, [g] = run(BudgetConfig(min_thinking_tokens=20, max_waits=3))
    assert g.waits == 0 and g.text == "think. The answer is B."


def test_wait_then_maximum_budget():
    _, [g] = run(BudgetConfig(min_thinking_tokens=25, max_thinking_tokens=25, max_waits=3))
    assert g.text == "think. Wait, mor\n\nThe answer is B."
    assert (g.thinking_tokens, g.waits, g.forced_stop) == (25, 1, True)


def test_every_sample_of_a_question_continues_in_one_call_per_round():
    engine, gens = run(BudgetConfig(max_thinking_tokens=4), n=3)
    assert [len(c) for c in engine.calls] == [1, 3]  # round 1: one request, n=3; round 2: 3 continuations
    assert len({c.params.seed for c in engine.calls[1]}) == 3
    assert all(g.text == "thin\n\nThe answer is B." for g in gens)


def test_cut_to_text_re_encodes_a_token_straddling_the_stop_string():
    class Merged(CharEngine):
        def decode(self, token_ids):
            return "".join("c T" if t == 1000 else chr(t) for t in token_ids if t != EOS)

    assert cut_to_text(Merged(), [97, 98, 1000, 104, 101], "abc ") == [97, 98, 99, 32]
    assert cut_to_text(CharEngine(), ids("ab The"), "ab ") == ids("ab ")


def test_config_errors():
    with pytest.raises(ValueError, match="min_thinking_tokens \\(9\\) exceeds max_thinking_tokens \\(8\\)"):
        BudgetConfig(max_thinking_tokens=8, min_thinking_tokens=9)
    with pytest.raises(ValueError, match="max_thinking_tokens must be >= 1"):
        BudgetConfig(max_thinking_tokens=0)
    assert not BudgetConfig().active and BudgetConfig(min_thinking_tokens=3).active


# --- streamed phases: the same generations as one barrier per round ---------------------------


def barrier_reference(engine, prompts, n, params, budget, seeds):
    """The forcing loop as it ran before streaming (one ``generate`` per round over every open
    response of every question), kept here as the reference the streamed loop must reproduce."""
    b = budget_module
    cap = b._think_cap(budget, params)
    stop = [*params.stop, budget.end_marker]
    first = [b._with(params, seed=s, stop=stop, max_new_tokens=cap, include_stop_str_in_output=False) for s in seeds]
    results = engine.generate([GenerationRequest(prompt=p, n=n, params=f) for p, f in zip(prompts, first)])
    out, open_ = [], []
    for r, s in zip(results, seeds):
        gens = []
        for j, sample in enumerate(r.samples):
            item = b._Open(list(r.prompt_token_ids), sample_seed(s, j), Generation(""))
            b._apply(engine, item, sample, budget, cap)
            gens.append(item.gen)
            if item.phase != "done":
                open_.append(item)
        out.append(gens)
    while open_:
        reqs = []
        for item in open_:
            item.rounds += 1
            seed = sample_seed(item.seed, 1000 + item.rounds)
            if item.phase == "think":
                p = b._with(params, seed=seed, stop=stop, max_new_tokens=cap - item.gen.thinking_tokens,
                            include_stop_str_in_output=False)
            else:
                p = b._with(params, seed=seed, stop=list(params.stop), max_new_tokens=budget.answer_max_tokens,
                            include_stop_str_in_output=False)
            reqs.append(GenerationRequest(prompt_token_ids=item.prompt_ids + item.gen.token_ids, n=1, params=p))
        for item, r in zip(open_, engine.generate(reqs)):
            b._apply(engine, item, r.samples[0], budget, cap)
        open_ = [item for item in open_ if item.phase != "done"]
    for gens in out:
        for g in gens:
            g.text = engine.decode(g.token_ids)
    return out


class SeededEngine(CharEngine):
    """Thinking drawn from the sample's seed: 0-9 words, then the answer cue (70%) or EOS; so
    within one call some responses stop themselves early, some late, some never."""

    def script(self, prompt, seed):
        if prompt.endswith("The answer is"):
            return " B."
        rng = random.Random(f"{seed}|{len(prompt)}")
        words = " ".join(rng.choice(["fever", "cough", "rash", "ache"]) for _ in range(rng.randint(0, 9)))
        return words + (". The answer is C." if rng.random() < 0.7 else ".")


class StreamEngine(SeededEngine):
    """A streaming engine: a request whose prompt holds ``[d=K]`` finishes K polls after it was
    submitted (default 1); each poll returns what is due, in ticket order. ``seeded=False``
    writes :class:`CharEngine`'s fixed script."""

    def __init__(self, seeded=True):
        super().__init__()
        self.seeded = seeded
        self.clock = 0
        self.queue = {}  # ticket -> (due, request)
        self.next_ticket = 0

    def submit(self, requests):
        tickets = []
        for req in requests:
            prompt = self.decode(req.prompt_token_ids or ids(req.prompt))
            delay = int(prompt.split("[d=")[1].split("]")[0]) if "[d=" in prompt else 1
            self.queue[self.next_ticket] = (self.clock + delay, req)
            tickets.append(self.next_ticket)
            self.next_ticket += 1
        return tickets

    def script(self, prompt, seed):
        return super().script(prompt, seed) if self.seeded else CharEngine.script(self, prompt, seed)

    def poll(self):
        if not self.queue:
            return []
        self.clock += 1
        due = [t for t, (when, _) in sorted(self.queue.items()) if when <= self.clock]
        return [(t, self._one(self.queue.pop(t)[1])) for t in due]

    def pending(self):
        return len(self.queue)


MIX = [BudgetConfig(min_thinking_tokens=20, max_thinking_tokens=40, max_waits=2),
       BudgetConfig(min_thinking_tokens=30, max_waits=1), BudgetConfig(max_thinking_tokens=12),
       BudgetConfig(min_thinking_tokens=12, max_thinking_tokens=12, max_waits=3)]


@pytest.mark.parametrize("budget", MIX)
@pytest.mark.parametrize("engine_cls", [SeededEngine, StreamEngine])
def test_streamed_forcing_gives_the_barrier_generations(budget, engine_cls):
    prompts = [f"Q{i} [d={1 + i % 3}]?\n\nStep 1: " for i in range(6)]
    params = SamplingParams(temperature=0.7, max_new_tokens=50)
    seeds = [11 * i + 1 for i in range(6)]
    want_engine = SeededEngine()
    want = barrier_reference(want_engine, prompts, 4, params, budget, seeds)
    engine = engine_cls()
    got = generate_with_budget(engine, prompts, 4, params, budget, seeds=seeds)
    assert got == want  # texts, token ids, every counter and finish reason
    if engine_cls is SeededEngine:  # a generate-only engine: the very same calls, one per round
        assert engine.calls == want_engine.calls
    flat = [g for gs in got for g in gs]
    assert len({tuple(g.token_ids) for g in flat}) > 10  # the seeds drew different responses


def test_the_mix_covers_every_phase():
    params = SamplingParams(temperature=0.7, max_new_tokens=50)
    prompts = [f"Q{i}?\n\nStep 1: " for i in range(6)]
    flat = [g for budget in MIX for gs in generate_with_budget(StreamEngine(), prompts, 4, params, budget,
                                                              seeds=range(6)) for g in gs]
    assert any(g.waits == 0 and not g.forced_stop and g.answer_tokens for g in flat)  # stopped itself
    assert any(g.waits for g in flat) and any(g.forced_stop for g in flat)
    assert any(g.waits and g.forced_stop for g in flat)  # a wait, then the cap
    assert any(g.finish_reason == "length" and not g.answer_tokens for g in flat)  # only a minimum: cut
    assert any(g.answer_tokens == 0 and g.finish_reason == "eos" for g in flat)  # ended without an answer


def test_each_question_is_reported_when_its_own_responses_are_done():
    engine = StreamEngine(seeded=False)
    prompts = ["[d=3] Q0?\n\nStep 1: ", "[d=1] Q1?\n\nStep 1: ", "[d=2] Q2?\n\nStep 1: "]
    done = []

    def on_done(index, gens):
        done.append((index, engine.clock, [g.text for g in gens]))

    out = generate_with_budget(engine, prompts, 2, SamplingParams(temperature=0, max_new_tokens=64),
                               BudgetConfig(max_thinking_tokens=4), seeds=[0, 1, 2], on_done=on_done)
    # think then answer: two requests each, Q1 done at poll 2, Q2 at 4, Q0 at 6 (no barrier: Q1's
    # answer ran before Q0's thinking was back)
    assert [(i, clock) for i, clock, _ in done] == [(1, 2), (2, 4), (0, 6)]
    assert all(texts == [g.text for g in out[i]] == ["thin\n\nThe answer is B."] * 2 for i, _, texts in done)


def test_plain_sampling_reports_questions_in_completion_order():
    engine = StreamEngine(seeded=False)
    prompts = ["[d=2] a Step 1: ", "[d=1] b Step 1: "]
    done = []
    out = generate_with_budget(engine, prompts, 3, SamplingParams(temperature=0, max_new_tokens=64),
                               seeds=[0, 1], on_done=lambda i, gens: done.append((i, engine.clock, len(gens))))
    assert done == [(1, 1, 3), (0, 2, 3)]
    assert [len(gs) for gs in out] == [3, 3] and out[0][0].text == "think. The answer is C."


def test_an_engine_that_drops_requests_is_an_error():
    class Forgetful(StreamEngine):
        def poll(self):
            self.queue.clear()
            return []

    with pytest.raises(RuntimeError, match="nothing pending but 1 requests are unanswered"):
        generate_with_budget(Forgetful(), [PROMPT], 1, SamplingParams(max_new_tokens=8))


# --- the same mechanism on a real (tiny) model, both engines ---------------------------------

BACKENDS = ["transformers", pytest.param("vllm", marks=pytest.mark.vllm)]


@pytest.fixture(scope="module", params=BACKENDS)
def tiny_engine(request):
    from meds3.engines import build_engine

    path = model_path("tiny-random-llama")
    if request.param == "vllm":
        yield request.getfixturevalue("tiny_vllm_engine")  # the session's (conftest): not closed here
        return
    else:
        eng = build_engine(path, backend="transformers", prefix_cache_mb=64)
    yield eng
    eng.close()


def test_tiny_model_maximum_budget(tiny_engine):
    budget = BudgetConfig(max_thinking_tokens=5, answer_max_tokens=3)
    params = SamplingParams(temperature=0, max_new_tokens=64)
    [[g]] = generate_with_budget(tiny_engine, ["The patient has a fever and"], 1, params, budget, seeds=[0])
    forced = tiny_engine.encode("\n\nThe answer is")
    assert g.forced_stop and g.thinking_tokens == 5 and g.inserted_tokens == len(forced)
    assert g.token_ids[5:5 + len(forced)] == forced
    assert len(g.token_ids) == 5 + len(forced) + g.answer_tokens and 1 <= g.answer_tokens <= 3
    assert g.text == tiny_engine.decode(g.token_ids)


def test_tiny_model_minimum_inserts_wait(tiny_engine):
    # The tiny model's planted rule: after "!" it greedily writes " goodbye". Taking " goodbye"
    # as the end of thinking and "!" as the wait text, every end is suppressed k times.
    budget = BudgetConfig(min_thinking_tokens=50, max_waits=2, think_end=" goodbye", wait_text="!",
                          answer_max_tokens=2)
    params = SamplingParams(temperature=0, max_new_tokens=64)
    [[g]] = generate_with_budget(tiny_engine, ["Hello!"], 1, params, budget, seeds=[0])
    bang, bye = tiny_engine.encode("!"), tiny_engine.encode(" goodbye")
    assert g.token_ids[:3] == bang + bang + bye
    assert (g.waits, g.thinking_tokens, g.inserted_tokens, g.forced_stop) == (2, 3, 2, False)
    assert g.text.startswith("!! goodbye")


def test_tiny_model_streamed_prompts_match_each_prompt_alone():
    """Prompts that need different phases (two waits, or a forced stop at the cap) streamed
    through one decode loop, each advancing on its own: with the batch-invariant transformers
    engine every response is what its prompt gets alone."""
    from meds3.engines import build_engine

    engine = build_engine(model_path("tiny-random-llama"), backend="transformers", batch_invariant=True)
    try:
        # The tiny model's planted rule: after "!" it writes " goodbye" (taken as the end of thinking).
        budget = BudgetConfig(min_thinking_tokens=4, max_thinking_tokens=8, max_waits=2, think_end=" goodbye",
                              wait_text="!", answer_max_tokens=3)
        params = SamplingParams(temperature=0.8, max_new_tokens=16)
        prompts = ["Hello!", "The patient has a fever and", "Hi there!", "A cough for two days and"]
        done = []
        streamed = generate_with_budget(engine, prompts, 2, params, budget, seeds=[0, 1, 2, 3],
                                        on_done=lambda i, gens: done.append(i))
        assert sorted(done) == [0, 1, 2, 3]
        flat = [g for gs in streamed for g in gs]
        assert any(g.waits == 2 for g in flat) and any(g.forced_stop for g in flat)
        for prompt, seed, gens in zip(prompts, [0, 1, 2, 3], streamed):
            assert generate_with_budget(engine, [prompt], 2, params, budget, seeds=[seed]) == [gens]
    finally:
        engine.close()
