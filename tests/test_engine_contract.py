"""Contract every generation backend must meet, run on ``tiny-random-llama``.

The same tests run against the transformers backend and (marked ``vllm``) the vLLM backend and
the openai backend on a real vLLM server (tests/openai_server.py); each backend's engine is
started once for the module, the server once for the session.
"""

from __future__ import annotations

import json

import pytest
from model_paths import model_path

from meds3.engines import (
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    build_engine,
)
from meds3.engines.models import TINY_EOS_PRELUDE, TINY_EOS_TRIGGER

# openai: the openai backend on a real vLLM server (tests/openai_server.py), also marked vllm
BACKENDS = ["transformers", pytest.param("vllm", marks=pytest.mark.vllm),
            pytest.param("openai", marks=[pytest.mark.vllm, pytest.mark.slow])]
PROMPTS = ["Hello there", "The patient is a 45-year-old man with chest pain and", "Step 1:"]


def greedy(n_tokens: int = 16, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=n_tokens, **kw)


@pytest.fixture(scope="module")
def tiny_path():
    return model_path("tiny-random-llama")


@pytest.fixture(scope="module")
def lora_dir(tiny_path, tmp_path_factory):
    """A LoRA adapter with non-zero random weights, and the model with it merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("lora")
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():  # large enough to change greedy outputs
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.3)
    model.save_pretrained(out / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(out / "merged")
    AutoTokenizer.from_pretrained(tiny_path).save_pretrained(out / "merged")
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tiny_path):
    if request.param == "vllm":
        yield request.getfixturevalue("tiny_vllm_engine")  # the session's (conftest): not closed here
        return
    elif request.param == "openai":
        server = request.getfixturevalue("openai_server")  # loads adapters at run time: load_adapters
        eng = build_engine("tiny", backend="openai", base_url=server.base_url, tokenizer=str(tiny_path),
                           load_adapters=True)
    else:
        eng = build_engine(tiny_path, backend="transformers", prefix_cache_mb=64)
    yield eng
    eng.close()


def run_one(engine, prompt, params, **kw) -> GenerationResult:
    return engine.generate([GenerationRequest(prompt=prompt, params=params, **kw)])[0]


def test_greedy_is_batch_invariant(engine):
    alone = [run_one(engine, p, greedy()).samples[0].token_ids for p in PROMPTS]
    batched = engine.generate([GenerationRequest(prompt=p, params=greedy()) for p in PROMPTS])
    assert [r.samples[0].token_ids for r in batched] == alone
    assert len({tuple(t) for t in alone}) == len(PROMPTS)


def test_token_id_prompt_continues_exactly(engine):
    text_result = run_one(engine, PROMPTS[1], greedy(12))
    ids = engine.encode(PROMPTS[1])
    assert text_result.prompt_token_ids == ids
    full = text_result.samples[0].token_ids
    cont = engine.generate([GenerationRequest(prompt_token_ids=ids + full[:5],
                                              params=greedy(7))])[0]
    assert cont.samples[0].token_ids == full[5:]


def test_stop_string_ends_sample_and_is_reported(engine):
    free = run_one(engine, PROMPTS[0], greedy(16)).samples[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 16
    # a stop string taken from the middle of the unstopped text
    middle = engine.decode(free.token_ids[6:8])
    stop = middle.strip()[:6] or middle
    cut = free.text.find(stop)
    assert cut >= 0
    got = run_one(engine, PROMPTS[0], greedy(16, stop=["zzzz-never", stop])).samples[0]
    assert got.finish_reason == "stop" and got.stop_reason == stop
    assert got.text == free.text[:cut]
    assert got.token_ids == free.token_ids[: len(got.token_ids)]
    assert len(got.token_ids) < 16
    kept = run_one(engine, PROMPTS[0], greedy(16, stop=[stop], include_stop_str_in_output=True))
    assert kept.samples[0].text == free.text[: cut + len(stop)]


def test_eos_finish(engine):
    sample = run_one(engine, "Say it" + TINY_EOS_TRIGGER, greedy(10)).samples[0]
    assert sample.finish_reason == "eos" and sample.stop_reason is None
    assert sample.text == TINY_EOS_PRELUDE
    assert sample.token_ids == engine.encode(TINY_EOS_PRELUDE) + [engine.tokenizer.eos_token_id]
    longer = run_one(engine, "Say it" + TINY_EOS_TRIGGER, greedy(10, ignore_eos=True)).samples[0]
    assert longer.finish_reason == "length" and len(longer.token_ids) == 10
    assert longer.token_ids[:2] == sample.token_ids


def test_length_finish_and_token_counts(engine):
    result = run_one(engine, PROMPTS[1], SamplingParams(temperature=1.0, max_new_tokens=5,
                                                        seed=3), n=3)
    prompt_len = len(engine.encode(PROMPTS[1]))
    assert result.prompt_tokens == prompt_len == len(result.prompt_token_ids)
    assert result.prompt_tokens_computed + result.prompt_tokens_cached == 3 * prompt_len
    assert 0 < result.prompt_tokens_computed <= 3 * prompt_len
    assert [s.finish_reason for s in result.samples] == ["length"] * 3
    assert [s.num_tokens for s in result.samples] == [5, 5, 5]
    assert result.generated_tokens == 15


def test_n_samples_and_seeds(engine):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=11)
    first = run_one(engine, PROMPTS[0], params, n=4)
    again = run_one(engine, PROMPTS[0], params, n=4)
    other = run_one(engine, PROMPTS[0], SamplingParams(**{**vars(params), "seed": 12}), n=4)
    texts = [s.token_ids for s in first.samples]
    assert len(texts) == 4 and len({tuple(t) for t in texts}) == 4
    assert [s.token_ids for s in again.samples] == texts
    assert [s.token_ids for s in other.samples] != texts


def test_many_requests_keep_order_and_ids(engine):
    reqs = [GenerationRequest(prompt=p, params=greedy(4 + i), request_id=f"r{i}", n=1 + i % 2)
            for i, p in enumerate(PROMPTS * 3)]
    results = engine.generate(reqs)
    assert [r.request_id for r in results] == [q.request_id for q in reqs]
    assert [len(r.samples) for r in results] == [q.n for q in reqs]
    for q, r in zip(reqs, results):
        assert all(len(s.token_ids) <= q.params.max_new_tokens for s in r.samples)
    # greedy samples of one request agree
    assert all(len({tuple(s.token_ids) for s in r.samples}) == 1 for r in results)


def test_many_long_seeded_prompts_in_one_call(engine):
    # more prompt tokens than one scheduler step takes (vLLM would split a prefill)
    long = " ".join(["the patient reports pain"] * 40)
    reqs = [GenerationRequest(prompt=f"{i} {long}", n=2, params=SamplingParams(
        max_new_tokens=3, seed=i)) for i in range(48)]
    results = engine.generate(reqs)
    assert sum(r.prompt_tokens for r in results) > 4096
    assert all(len(s.token_ids) == 3 for r in results for s in r.samples)


def test_lora_adapter_per_request(engine, lora_dir):
    merged = build_engine(lora_dir / "merged", backend="transformers")
    want = [r.samples[0].token_ids for r in merged.generate(
        [GenerationRequest(prompt=p, params=greedy(10)) for p in PROMPTS])]
    base = [run_one(engine, p, greedy(10)).samples[0].token_ids for p in PROMPTS]
    adapter = str(lora_dir / "adapter")
    mixed = engine.generate(
        [GenerationRequest(prompt=p, params=greedy(10), adapter=adapter) for p in PROMPTS]
        + [GenerationRequest(prompt=p, params=greedy(10)) for p in PROMPTS])
    got = [r.samples[0].token_ids for r in mixed]
    assert got[3:] == base
    assert got[:3] != base
    # float32 LoRA vs merged weights: the first tokens agree exactly
    assert [g[:4] for g in got[:3]] == [w[:4] for w in want]


def test_chat_prompt_has_template(engine):
    text = engine.chat_prompt([{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n") and "hi" in text


def test_result_json_roundtrip(engine):
    result = run_one(engine, PROMPTS[0], greedy(3, stop=["x"]), request_id="q1")
    again = GenerationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    req = GenerationRequest(prompt_token_ids=[1, 2], n=2, params=greedy(3, stop=["a"]))
    assert GenerationRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
