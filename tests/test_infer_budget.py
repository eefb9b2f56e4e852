"""Budget forcing: exact token sequences with a character-level scripted engine, then the
same path on ``tiny-random-llama`` with both engines."""

from __future__ import annotations

import pytest
from model_paths import model_path

from meds3.engines.types import GenerationResult, Sample, SamplingParams
from meds3.infer.budget import BudgetConfig, cut_to_text, generate_with_budget

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

    def _one(self, req):
        prompt_ids = req.prompt_token_ids or ids(req.prompt)
        prompt = self.decode(prompt_ids)
        want = next(v for k, v in self.SCRIPT.items() if prompt.endswith(k))
        p = req.params
        hits = [(want.find(s), s) for s in p.stop if s in want]
        samples = []
        for _ in range(req.n):
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
