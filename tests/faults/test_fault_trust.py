"""Trust boundaries (issue 15, item 9): the ``engine:`` section takes only known options per
backend, running a model's own code is an explicit option (off by default) passed to every
loading call, and a missing local path is never fetched from the Hub under that name."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from meds3.config import ConfigError, from_dict
from meds3.engines import ModelResolutionError, resolve_model
from meds3.engines.base import (
    BACKEND_OPTIONS,
    TRANSFORMERS_OPTIONS,
    VLLM_LLM_OPTIONS,
    VLLM_OWN_OPTIONS,
    check_engine_options,
)
from meds3.eval import EvalConfig
from meds3.evolve import EvolveConfig
from meds3.rollout import RolloutConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cls, extra", [(RolloutConfig, {}), (EvalConfig, {"datasets": ["x"]}),
                                        (EvolveConfig, {})], ids=["rollout", "eval", "evolve"])
@pytest.mark.parametrize("backend, key", [("vllm", "worker_cls"), ("vllm", "hf_token"),
                                          ("vllm", "allowed_local_media_path"), ("transformers", "max_model_len"),
                                          ("transformers", "device_map")])
def test_unknown_engine_key_is_refused_by_name(cls, extra, backend, key):
    with pytest.raises(ConfigError) as info:
        from_dict(cls, {**extra, "backend": backend, "engine": {key: "x"}})
    message = str(info.value)
    assert f"engine.{key}: not an option of the {backend} backend" in message
    assert "allowed: " in message and "trust_remote_code" in message


def test_known_engine_keys_are_accepted():
    config = from_dict(RolloutConfig, {"backend": "vllm", "engine": {
        "tensor_parallel_size": 2, "enable_lora": True, "trust_remote_code": True, "quantization": "fp8"}})
    assert config.engine_options()["tensor_parallel_size"] == 2
    assert from_dict(RolloutConfig, {"engine": {"prefix_cache_mb": 64, "trust_remote_code": False}})
    with pytest.raises(ConfigError, match="engine.trust_remote_code: expected true or false"):
        from_dict(RolloutConfig, {"engine": {"trust_remote_code": "yes"}})


def _engine_sections(node, backend="transformers"):
    """Every ``engine:`` mapping in a loaded YAML document, with the backend beside it."""
    if isinstance(node, dict):
        backend = node.get("backend", backend)
        if isinstance(node.get("engine"), dict):
            yield backend, node["engine"]
        for value in node.values():
            yield from _engine_sections(value, backend)
    elif isinstance(node, list):
        for value in node:
            yield from _engine_sections(value, backend)


def test_every_engine_key_of_the_example_configs_is_allowed():
    files = sorted((REPO / "examples" / "configs").rglob("*.yaml"))
    found = 0
    for path in files:
        for backend, engine in _engine_sections(yaml.safe_load(path.read_text(encoding="utf-8"))):
            check_engine_options(backend, engine)
            found += 1
    assert found >= 3  # eval_tiny, rollout_paper, paper/evolve_llama8b


def test_transformers_allow_list_is_the_constructor():
    from meds3.engines.hf_backend import TransformersEngine

    params = inspect.signature(TransformersEngine.__init__).parameters
    assert TRANSFORMERS_OPTIONS == set(params) - {"self", "model", "tokenizer"}
    assert params["trust_remote_code"].default is False


def test_vllm_allow_list_is_the_constructor_and_real_llm_options():
    from meds3.engines.vllm_backend import VLLMEngine

    params = inspect.signature(VLLMEngine.__init__).parameters
    assert VLLM_OWN_OPTIONS == set(params) - {"self", "model", "llm_kwargs"}
    assert params["trust_remote_code"].default is False
    assert BACKEND_OPTIONS["vllm"] == VLLM_OWN_OPTIONS | VLLM_LLM_OPTIONS
    assert not VLLM_LLM_OPTIONS & {"model", "tokenizer", "hf_token", "allowed_local_media_path", "trust_remote_code"}


def test_vllm_llm_options_exist_in_the_installed_vllm():
    vllm = pytest.importorskip("vllm")
    import dataclasses

    names = {f.name for f in dataclasses.fields(vllm.EngineArgs)} | set(inspect.signature(vllm.LLM.__init__).parameters)
    assert VLLM_LLM_OPTIONS <= names, sorted(VLLM_LLM_OPTIONS - names)


def test_vllm_engine_refuses_unknown_llm_kwargs_before_loading(monkeypatch):
    from meds3.engines import vllm_backend

    monkeypatch.setattr(vllm_backend, "_import_vllm", lambda: pytest.fail("vllm imported for a refused option"))
    with pytest.raises(ValueError, match="vllm engine option 'worker_cls' is not allowed; allowed: .*tensor_parallel"):
        vllm_backend.VLLMEngine("tiny-random-llama", worker_cls="evil.Worker")


@pytest.mark.parametrize("trust", [None, True])
def test_trust_remote_code_reaches_model_and_tokenizer_loading(monkeypatch, tmp_path, trust):
    import transformers

    from meds3.engines import hf_backend

    seen = []

    class Stop(Exception):
        pass

    def fake_model(path, **kwargs):
        seen.append(("model", kwargs.get("trust_remote_code")))
        return transformers.AutoModelForCausalLM  # never used: the tokenizer stops the build

    def fake_tokenizer(path, **kwargs):
        seen.append(("tokenizer", kwargs.get("trust_remote_code")))
        raise Stop

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_tokenizer)
    options = {} if trust is None else {"trust_remote_code": trust}
    with pytest.raises(Stop):
        hf_backend.TransformersEngine(str(tmp_path), device="cpu", **options)
    assert seen == [("model", bool(trust)), ("tokenizer", bool(trust))]


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything asks the Hub; record hub ids that would be fetched."""
    import huggingface_hub

    asked = []

    def snapshot_download(repo_id, **kwargs):
        asked.append(repo_id)
        raise OSError("offline in tests")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return asked


@pytest.mark.parametrize("name", ["./no-such-model", "../no-such-model", "/no/such/model", "~/no-such-meds3-model",
                                  "runs/iter1/policy/merged", "models/llama\\8b", "checkpoints/"])
def test_missing_local_path_is_never_fetched(name, no_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelResolutionError) as info:
        resolve_model(name)
    assert "tried as a local path" in str(info.value) and "does not exist" in str(info.value)
    assert no_hub == []


def test_partly_existing_path_is_a_local_path(no_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelResolutionError, match="tried as a local path"):
        resolve_model("runs/policy")  # the shape of owner/name, but ./runs exists here
    assert no_hub == []


def test_a_file_is_not_a_model(no_hub, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelResolutionError, match="is a file, expected a model directory"):
        resolve_model(str(tmp_path / "model.safetensors"))
    assert no_hub == []


@pytest.mark.parametrize("name", ["gpt2", "not a model", "smollm2", "owner/na me", "-owner/name", "owner/name-",
                                  "owner--x/name", "owner/name..x", "owner/" + "n" * 97])
def test_name_that_is_no_alias_and_no_hub_id_is_not_fetched(name, no_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelResolutionError) as info:
        resolve_model(name)
    message = str(info.value)
    assert "not an embedded alias" in message and "not a Hugging Face id of the form owner/name" in message
    assert no_hub == []


def test_hub_id_is_tried_on_the_hub(no_hub, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelResolutionError, match="as a Hugging Face id it could not be fetched"):
        resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert no_hub == ["meta-llama/Llama-3.1-8B-Instruct"] * 2  # the local cache, then the network
