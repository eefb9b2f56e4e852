"""Policy SFT on tiny-random-llama: the loss falls, the adapter loads back with identical
logits, and the generation engines serve it."""

from __future__ import annotations

import json

import pytest
from model_paths import model_path
from train_trees import question, write_trees

from meds3.config import load_config
from meds3.engines import GenerationRequest, SamplingParams, build_engine, resolve_model
from meds3.train import PolicyTrainConfig, fit_policy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_path()
    root = tmp_path_factory.mktemp("policy")
    write_trees(root / "rollout", n_questions=2)
    config = PolicyTrainConfig(trees=[str(root / "rollout")], base_model="tiny-random-llama",
                               output_dir=str(root / "out"), r=8, alpha=16, dropout=0.0, learning_rate=1e-2,
                               max_steps=6, batch_size=2, merge=True)
    return config, fit_policy(config, progress=False)


def _batch(result, n=4):
    from transformers import DataCollatorForSeq2Seq

    rows = [{k: result.dataset[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in range(n)]
    return DataCollatorForSeq2Seq(result.tokenizer, padding=True, label_pad_token_id=-100)(rows)


def test_outputs_and_summary(trained):
    config, result = trained
    out = result.result.adapter_dir.rsplit("/", 1)[0]
    assert result.result.output_dir == result.result.adapter_dir == f"{config.output_dir}/adapter"
    s = json.loads(open(f"{out}/summary.json").read())
    assert s == result.result.summary()  # the layout summary.json always had
    assert list(s) == ["kind", "records", "examples", "steps", "epochs", "first_loss", "last_loss", "losses",
                       "seconds", "adapter_dir", "loss_png", "questions", "device", "merged_dir"]
    assert (s["records"], s["examples"], s["questions"], s["steps"]) == (4, 4, 2, 6)
    assert len(s["losses"]) == 6 and s["first_loss"] == s["losses"][0]
    assert s["adapter_dir"].endswith("out/adapter") and s["merged_dir"].endswith("out/merged")
    assert len(open(f"{out}/data.jsonl").read().splitlines()) == 4
    assert open(f"{out}/loss.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    again = load_config(PolicyTrainConfig, f"{out}/config.yaml")
    assert again == config


def test_training_lowers_the_loss(trained):
    import torch

    _, result = trained
    batch = _batch(result)
    with torch.no_grad():
        after = result.model(**batch).loss.item()
        with result.model.disable_adapter():
            before = result.model(**batch).loss.item()
    assert after < before - 0.5, (before, after)
    assert result.result.metrics["last_loss"] < result.result.metrics["first_loss"]


def test_adapter_loads_back_with_identical_logits(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, result = trained
    batch = _batch(result)
    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random-llama"), dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, result.result.adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(result.result.merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        want = result.model(**batch).logits
        assert torch.equal(loaded(**batch).logits, want)
        assert torch.allclose(merged(**batch).logits, want, atol=1e-4)


def test_transformers_engine_serves_the_adapter(trained):
    from meds3.data.prompts import render_prompt

    _, result = trained
    prompt = render_prompt(question(), result.tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    engine = build_engine("tiny-random-llama", backend="transformers")
    merged = build_engine(result.result.merged_dir, backend="transformers")
    base_out, lora_out = engine.generate([GenerationRequest(prompt=prompt, params=params),
                                          GenerationRequest(prompt=prompt, params=params,
                                                            adapter=result.result.adapter_dir)])
    want = merged.generate([GenerationRequest(prompt=prompt, params=params)])[0]
    assert lora_out.samples[0].token_ids[:4] == want.samples[0].token_ids[:4]
    assert lora_out.samples[0].token_ids != base_out.samples[0].token_ids


@pytest.mark.vllm
@pytest.mark.slow  # end to end; the transformers path of the same adapter is pinned above
def test_vllm_serves_the_adapter(trained):
    pytest.importorskip("vllm", reason="vllm not installed")
    from meds3.data.prompts import render_prompt

    _, result = trained
    prompt = render_prompt(question(), result.tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=4)
    engine = build_engine("tiny-random-llama", backend="vllm", enable_lora=True, max_lora_rank=8, max_model_len=512,
                          gpu_memory_utilization=0.1)  # a small model: leave the shared RAM to others
    try:
        got = engine.generate([GenerationRequest(prompt=prompt, params=params, adapter=result.result.adapter_dir)])
    finally:
        engine.close()
    merged = build_engine(result.result.merged_dir, backend="transformers")
    want = merged.generate([GenerationRequest(prompt=prompt, params=params)])[0]
    assert got[0].samples[0].token_ids[:2] == want.samples[0].token_ids[:2]


def test_cli_train_policy(tmp_path, capsys):
    from meds3.cli import main

    model_path()
    write_trees(tmp_path / "rollout", n_questions=1)
    out = tmp_path / "cli"
    assert main(["train", "policy", "--trees", str(tmp_path / "rollout"), "--base", "tiny-random-llama",
                 "-o", str(out), "--no-progress", "max_steps=1", "r=4", "alpha=8", "data.top_k=1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["kind"], summary["records"], summary["steps"]) == ("policy", 1, 1)
    assert summary["output_dir"] == summary["adapter_dir"] == str(out / "adapter")
    assert set(summary["metrics"]) == {"first_loss", "last_loss"} and "losses" not in summary
    assert load_config(PolicyTrainConfig, out / "config.yaml").r == 4


def test_cli_train_errors(tmp_path, capsys):
    from meds3.cli import main

    assert main(["train", "prm", "-o", str(tmp_path / "x")]) == 2
    assert "trees: give --trees" in capsys.readouterr().err
    assert main(["train", "prm", "--trees", str(tmp_path / "nothing"), "lr=1"]) == 2
    assert "unknown key 'lr'" in capsys.readouterr().err
    assert main(["train", "prm", "--trees", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")]) == 2
    assert "nothing: does not exist" in capsys.readouterr().err
    assert main(["train", "policy", "--trees", str(tmp_path), "--base", str(tmp_path / "no-model")]) == 2
    assert "base_model: " in capsys.readouterr().err
