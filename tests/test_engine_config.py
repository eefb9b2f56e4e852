"""One EngineConfig for every generating stage: flat YAML keys, validation, the one builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from meds3.config import ConfigError, from_dict, load_config, save_config, to_dict
from meds3.engines.config import ENGINE_FIELDS, EngineConfig, build_engine_from
from meds3.eval import EvalConfig
from meds3.evolve import EvolveConfig
from meds3.rollout import RolloutConfig

ROOT = Path(__file__).resolve().parents[1]


def test_stage_configs_share_the_engine_fields():
    for cls in (RolloutConfig, EvalConfig):
        assert issubclass(cls, EngineConfig)
        names = [f for f in cls.__dataclass_fields__]
        assert names[:4] == list(ENGINE_FIELDS)  # declared once, first in every stage config
    assert EngineConfig() == EngineConfig("smollm2-135m-instruct", "transformers", {}, None)


def test_flat_yaml_keys_fill_the_engine_config(tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text("model: tiny-random-llama\nbackend: transformers\nengine: {max_batch_size: 4, seed: 1}\n"
                    "adapter: runs/a/adapter\nlimit: 2\n", encoding="utf-8")
    config = load_config(RolloutConfig, path, ["engine.dtype=float32"])
    assert config.engine_config() == EngineConfig("tiny-random-llama", "transformers",
                                                  {"max_batch_size": 4, "seed": 1, "dtype": "float32"},
                                                  "runs/a/adapter")
    save_config(config, tmp_path / "saved.yaml")  # still four flat keys
    saved = (tmp_path / "saved.yaml").read_text(encoding="utf-8")
    assert "\nbackend: transformers\n" in saved and "adapter: runs/a/adapter" in saved
    assert load_config(RolloutConfig, tmp_path / "saved.yaml") == config


def test_openai_backend_is_allowed_and_unknown_ones_are_named():
    assert from_dict(EvalConfig, {"backend": "openai"}).backend == "openai"
    assert from_dict(EvolveConfig, {"backend": "openai", "held_out": 1}).backend == "openai"
    with pytest.raises(ConfigError, match=r"backend: 'tpu' is not one of 'transformers', 'vllm', 'openai'"):
        from_dict(RolloutConfig, {"backend": "tpu"})


@pytest.mark.parametrize("data, message", [
    ({"model": " "}, "model must name a model"),
    ({"adapter": ""}, "adapter must be a folder or null"),
    ({"engine": {"max_batchsize": 4}}, r"engine\.max_batchsize: not an option of the transformers backend"),
    # no nested section: engine: holds backend options only, so `engine: {model: ...}` is named as an option
    ({"engine": {"model": "x", "backend": "vllm"}}, r"engine\.backend: not an option of the transformers backend"),
])
def test_validation_names_the_field(data, message):
    for cls in (EngineConfig, RolloutConfig, EvalConfig):
        with pytest.raises((ConfigError, ValueError), match=message):
            from_dict(cls, data)


def test_the_builder_passes_the_stage_sized_options(monkeypatch):
    import meds3.engines

    calls = []
    monkeypatch.setattr(meds3.engines, "build_engine", lambda model, backend, **kw: calls.append((model, backend, kw)))
    build_engine_from(EngineConfig("tiny-random-llama", engine={"max_batch_size": 2}))
    rollout = RolloutConfig(model="m", backend="vllm", engine={"gpu_memory_utilization": 0.3})
    build_engine_from(rollout)
    assert calls[0] == ("tiny-random-llama", "transformers", {"max_batch_size": 2})
    # vLLM reserves a context: the rollout's longest request (max_prompt_tokens + its search, lengths.py)
    assert calls[1] == ("m", "vllm", {"gpu_memory_utilization": 0.3, "max_model_len": 5120})
    assert rollout.engine_config().engine == calls[1][2]


def test_with_engine_points_a_stage_at_a_policy():
    policy = EngineConfig("base", "vllm", {"enable_lora": True}, "iter1/policy/adapter")
    rollout = RolloutConfig(limit=3).with_engine(policy)
    assert rollout.engine_config() == EngineConfig("base", "vllm", {"enable_lora": True, "max_model_len": 5120},
                                                   "iter1/policy/adapter")
    assert rollout.limit == 3
    evolve = from_dict(EvolveConfig, {"base_model": "tiny-random-llama", "held_out": 1})
    assert evolve.engine_config("a") == EngineConfig("tiny-random-llama", "transformers", {}, "a")


@pytest.mark.parametrize("name, cls", [
    ("rollout.yaml", RolloutConfig), ("rollout_paper.yaml", RolloutConfig), ("eval.yaml", EvalConfig),
    ("eval_tiny.yaml", EvalConfig), ("evolve.yaml", EvolveConfig), ("evolve_3iter.yaml", EvolveConfig),
    ("evolve_shared.yaml", EvolveConfig),
])
def test_shipped_configs_still_load(name, cls):
    config = load_config(cls, ROOT / "examples" / "configs" / name)
    data = to_dict(config)
    assert {"backend", "engine"} <= set(data)  # the flat keys, as before
