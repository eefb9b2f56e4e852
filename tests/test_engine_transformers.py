"""transformers backend specifics: shared prefill, prefix reuse, batching limits, sampling."""

from __future__ import annotations

import pytest
import torch
from model_paths import model_path

from meds3.engines import GenerationRequest, SamplingParams, build_engine
from meds3.engines.kv import PrefixStore
from meds3.engines.sampling import StopChecker, sample_tokens

PROMPTS = ["Hello there", "The patient is a 45-year-old man with chest pain and", "Step 1:",
           "Question: which vitamin deficiency causes scurvy? Answer:"]


@pytest.fixture(scope="module")
def tiny_path():
    return model_path("tiny-random-llama")


@pytest.fixture(scope="module")
def engine(tiny_path):
    return build_engine(tiny_path, prefix_cache_mb=0)


def greedy(n_tokens=12, **kw):
    return SamplingParams(temperature=0.0, max_new_tokens=n_tokens, **kw)


def reference(engine, prompt, n_tokens):
    """Greedy continuation from transformers' own generate()."""
    ids = torch.tensor([engine.encode(prompt)])
    out = engine.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=n_tokens, eos_token_id=None)
    return out[0, ids.shape[1]:].tolist()


def test_cpu_defaults_to_float32(engine):
    assert engine.device.type == "cpu" and engine.dtype == torch.float32
    assert next(engine.model.parameters()).dtype == torch.float32


def test_greedy_matches_transformers_generate(engine):
    results = engine.generate([GenerationRequest(prompt=p, params=greedy(12)) for p in PROMPTS])
    for prompt, result in zip(PROMPTS, results):
        assert result.samples[0].token_ids == reference(engine, prompt, 12)


def test_n_samples_share_one_prefill(tiny_path):
    shared = build_engine(tiny_path, prefix_cache_mb=0)
    separate = build_engine(tiny_path, prefix_cache_mb=0, share_prefill=False)
    req = GenerationRequest(prompt=PROMPTS[1], n=4, params=SamplingParams(max_new_tokens=6, seed=5))
    a, b = shared.generate([req])[0], separate.generate([req])[0]
    p = a.prompt_tokens
    assert (a.prompt_tokens_computed, a.prompt_tokens_cached) == (p, 3 * p)
    assert (b.prompt_tokens_computed, b.prompt_tokens_cached) == (4 * p, 0)
    # same seeds, same samples, whichever way the prefill was done
    assert [s.token_ids for s in a.samples] == [s.token_ids for s in b.samples]


def test_identical_prompts_in_one_call_prefill_once(engine):
    reqs = [GenerationRequest(prompt=PROMPTS[3], params=greedy(4)) for _ in range(3)]
    results = engine.generate(reqs)
    assert [r.prompt_tokens_computed for r in results] == [results[0].prompt_tokens, 0, 0]


def test_prefix_cache_reuses_parent_prefix_and_generated_step(tiny_path, engine):
    cached = build_engine(tiny_path, prefix_cache_mb=64)
    parent = cached.generate([GenerationRequest(prompt=PROMPTS[1], params=greedy(8))])[0]
    assert parent.prompt_tokens_cached == 0
    # a child continues the parent's prompt and generated step with a few new tokens
    child_ids = parent.prompt_token_ids + parent.samples[0].token_ids + cached.encode(" Step 2:")
    child = cached.generate([GenerationRequest(prompt_token_ids=child_ids, n=2,
                                               params=SamplingParams(max_new_tokens=8, seed=1))])[0]
    new_tokens = len(child_ids) - (len(parent.prompt_token_ids) + 7)
    assert child.prompt_tokens_computed == new_tokens
    fresh = engine.generate([GenerationRequest(prompt_token_ids=child_ids, n=2,
                                               params=SamplingParams(max_new_tokens=8, seed=1))])[0]
    assert [s.token_ids for s in child.samples] == [s.token_ids for s in fresh.samples]


# Sampled comparisons across batch shapes use a low temperature: float32 logits differ in the
# last bits between batch shapes, and over the random model's flat 49k-token distribution that
# can move an inverse-CDF draw to a neighbouring token.
SHARP = dict(temperature=0.05, top_p=0.9)


def test_small_batches_and_budget_give_same_results(tiny_path, engine):
    reqs = [GenerationRequest(prompt=p, n=2, params=SamplingParams(max_new_tokens=4 + 3 * i,
                                                                   seed=i, **SHARP))
            for i, p in enumerate(PROMPTS)]
    reqs += [GenerationRequest(prompt=p, params=greedy(5 + i)) for i, p in enumerate(PROMPTS)]
    big = engine.generate(reqs)
    small = build_engine(tiny_path, prefix_cache_mb=0, max_batch_size=3, kv_cache_mb=1,
                         max_prefill_tokens=16).generate(reqs)
    assert [[s.token_ids for s in r.samples] for r in small] == \
        [[s.token_ids for s in r.samples] for r in big]


def test_seeded_samples_do_not_depend_on_batch(engine):
    req = GenerationRequest(prompt=PROMPTS[0], n=3,
                            params=SamplingParams(max_new_tokens=6, seed=9, **SHARP))
    alone = engine.generate([req])[0]
    crowd = engine.generate([GenerationRequest(prompt=p, n=2, params=SamplingParams(
        max_new_tokens=9)) for p in PROMPTS] + [req])[-1]
    assert [s.token_ids for s in crowd.samples] == [s.token_ids for s in alone.samples]


def test_prompt_too_long_is_rejected(engine):
    with pytest.raises(ValueError, match="exceeds the model context"):
        engine.generate([GenerationRequest(prompt_token_ids=[5] * 2040, params=greedy(20))])


def test_sample_tokens_greedy_top_p_and_distribution():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    got = sample_tokens(logits, torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.5, 1.0]), gens)
    assert got[0] == 1 and got[1] == 0  # argmax; nucleus of 0.5 keeps only the top token
    gen = [torch.Generator().manual_seed(0)]
    draws = [int(sample_tokens(torch.log(torch.tensor([[0.2, 0.8]])), torch.ones(1),
                               torch.ones(1), gen)[0]) for _ in range(2000)]
    assert 0.75 < sum(draws) / 2000 < 0.85


def test_stop_checker_cuts_at_earliest_stop(engine):
    checker = StopChecker(engine.tokenizer, ["Step 3:", "Step 2:"])
    assert checker.finish("a Step 2: b Step 3:", keep=False) == ("a ", "Step 2:")
    assert checker.finish("a Step 2: b", keep=True) == ("a Step 2:", "Step 2:")
    assert checker.hit(engine.encode("so on. Step 2:")) and not checker.hit(engine.encode("Step"))


def test_prefix_store_longest_match_and_budget():
    kv = lambda n: [(torch.zeros(1, n, 2), torch.zeros(1, n, 2))]  # noqa: E731
    store = PrefixStore(max_bytes=16 * 10)  # 16 bytes per token here: room for 10 tokens
    store.insert(None, [1, 2, 3], kv(3))
    store.insert(None, [1, 2, 3, 4, 5], kv(5))  # replaces its own prefix [1, 2, 3]
    assert len(store) == 1
    assert store.lookup(None, [1, 2, 3, 9], 3)[1] == 3
    assert store.lookup(None, [1, 2, 3, 4, 5, 6], 5)[1] == 5
    assert store.lookup("lora", [1, 2, 3], 2) == (None, 0)
    store.insert(None, [7, 8, 9, 10, 11, 12], kv(6))  # over budget: evicts the oldest
    assert len(store) == 1 and store.lookup(None, [1, 2], 2) == (None, 0)
