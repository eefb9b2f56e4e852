"""Batch-invariant generation (``batch_invariant=True``, meds3/engines/invariant.py): a seeded
request's tokens are bit-identical whatever shares its batch: neighbours of other lengths and
sample counts, neighbours that finish early (compaction), another order, a LoRA adapter, and a
rollout searched in one run or split over a resume.

The model is random with SmolLM2-135M's layer widths (576 hidden, 9/3 heads, 1536 MLP) and two
layers: at these widths the default engine's outputs do depend on the batch on this CPU (the
tiny test model's 64-wide layers hide it), so the tests exercise what the mode fixes."""

from __future__ import annotations

import random

import pytest
import torch
from model_paths import model_path

from meds3.engines import build_engine
from meds3.engines.invariant import TILE, tiled_linear
from meds3.engines.types import GenerationRequest, SamplingParams
from meds3.mcts import tree_shapes


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(model_path("tiny-random-llama"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    out = tmp_path_factory.mktemp("wide")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_tiled_linear_rows_do_not_depend_on_the_other_rows():
    torch.manual_seed(0)
    weight, bias = torch.randn(1536, 576), torch.randn(1536)
    x = torch.randn(100, 576)
    alone = tiled_linear(x[:1], weight, bias)[0]
    for m in (1, 2, TILE - 1, TILE, TILE + 1, 37, 100):
        assert torch.equal(tiled_linear(x[:m], weight, bias)[0], alone), m
    perm = torch.randperm(100)
    assert torch.equal(tiled_linear(x[perm], weight, bias), tiled_linear(x, weight, bias)[perm])
    assert torch.allclose(tiled_linear(x, weight, bias), torch.nn.functional.linear(x, weight, bias), atol=1e-4)
    assert tiled_linear(x.reshape(4, 25, 576), weight).shape == (4, 25, 1536)


def request(engine, text, n, tokens, seed, temperature=1.0, adapter=None):
    return GenerationRequest(prompt=engine.chat_prompt([{"role": "user", "content": text}]), n=n, adapter=adapter,
                             params=SamplingParams(temperature=temperature, max_new_tokens=tokens, seed=seed))


def tokens_of(result):
    return [s.token_ids for s in result.samples]


def check_invariance(engine, targets, rng, mixes=3, adapter=None):
    alone = [tokens_of(engine.generate([t])[0]) for t in targets]
    for _ in range(mixes):
        others = [request(engine, "word " * rng.randint(1, 60) + "?", rng.randint(1, 3), rng.randint(1, 30),
                          rng.randint(0, 99), adapter=adapter) for _ in range(rng.randint(2, 6))]
        mix = others + targets
        rng.shuffle(mix)
        results = engine.generate(mix)
        for target, want in zip(targets, alone):
            assert tokens_of(results[mix.index(target)]) == want


def test_a_seeded_request_gives_the_same_tokens_whatever_shares_its_batch(wide_model):
    engine = build_engine(str(wide_model), backend="transformers", batch_invariant=True)
    assert engine.prefix_store.max_bytes == 0  # no prefix-cache hits in this mode
    targets = [request(engine, f"Patient {i}: fever and cough for {i} days. Diagnosis?", 3, 40, 100 + i)
               for i in range(3)]
    targets.append(request(engine, "A long history. " * 20 + "What next?", 1, 25, 5, temperature=0.0))  # greedy
    check_invariance(engine, targets, random.Random(0))


def test_invariance_holds_with_a_lora_adapter(wide_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(wide_model),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in lora.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(p, std=0.2)
    lora.save_pretrained(tmp_path / "adapter")
    engine = build_engine(str(wide_model), backend="transformers", batch_invariant=True)
    adapter = str(tmp_path / "adapter")
    targets = [request(engine, f"Dose question {i}?", 2, 30, 7 + i, adapter=adapter) for i in range(2)]
    check_invariance(engine, targets, random.Random(1), mixes=2, adapter=adapter)


@pytest.mark.slow  # two full rollouts; the per-request invariance it rests on is pinned above
def test_a_rollout_split_over_a_resume_grows_the_same_trees(wide_model, tmp_path):
    from meds3.data import save_questions
    from meds3.data.question import MedQuestion
    from meds3.mcts import SearchConfig
    from meds3.rollout import RolloutConfig, TreeStore, run_rollout

    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, [MedQuestion(id=f"q{i}", question=f"Case {i}: " + "symptom " * (3 * i + 1) + "Answer?",
                                       options={"A": "flu", "B": "cold"}, answer="A") for i in range(4)])
    search = SearchConfig(max_nodes=5, rollout_budget=2, min_rollouts=2, max_step_tokens=10, max_finish_tokens=12,
                          max_rollout_tokens=12, count_truncated=True)

    def run(name, limits):
        config = RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / name), model=str(wide_model),
                               engine={"batch_invariant": True}, live_trees=4, search=search)
        for limit in limits:  # a resume: the next run searches the questions not yet stored
            config.limit = limit
            run_rollout(config, progress=False)
        return tree_shapes(TreeStore(tmp_path / name / "trees").iter_trees(), ("parent", "kind", "step", "value"),
                           digits=None)

    together = run("together", [4])
    resumed = run("resumed", [1, 3, 4])  # 1 tree alone, then 2 together, then the last one alone
    assert len(together) == 4 and resumed == together


@pytest.mark.slow
def test_invariance_on_the_embedded_model():
    """The embedded SmolLM2-135M, where the default engine's tokens did change with the batch
    (2 of 9 seeded requests here): with the mode, none does."""
    engine = build_engine(model_path("smollm2-135m-instruct"), backend="transformers", batch_invariant=True)
    targets = [request(engine, f"Patient {i}: fever and cough for {i} days. Diagnosis?", 3, 40, 100 + i)
               for i in range(3)]
    check_invariance(engine, targets, random.Random(0))


@pytest.mark.vllm
def test_vllm_batch_invariance_is_refused_without_a_gpu():
    """vLLM's batch-invariant kernels are GPU (Triton) kernels: on CPU the option says so and
    points to the transformers mode, rather than silently running a non-invariant engine."""
    from vllm.platforms import current_platform

    if current_platform.is_cuda():
        pytest.skip("a CUDA GPU is present: the mode is available")
    with pytest.raises(ValueError, match="CUDA GPU.*transformers backend"):
        build_engine("tiny-random-llama", backend="vllm", batch_invariant=True)
