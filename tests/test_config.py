"""Typed configs: YAML round trip, key=value overrides, unknown keys and bad values by name."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from meds3.config import ConfigError, from_dict, load_config, parse_overrides, save_config
from meds3.data.prompts import PromptConfig


@dataclass
class Inner:
    width: int = 3
    c: float = 2.0

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


@dataclass
class Outer:
    name: str = "run"
    inner: Inner = field(default_factory=Inner)
    levels: list[str] = field(default_factory=lambda: ["easy"])
    backend: Literal["transformers", "vllm"] = "transformers"
    limit: Optional[int] = None
    verbose: bool = False


def test_defaults_and_nested_yaml_round_trip(tmp_path):
    cfg = load_config(Outer, overrides=["inner.width=5", "levels=[easy, hard]", "limit=10"])
    assert cfg == Outer(inner=Inner(width=5), levels=["easy", "hard"], limit=10)
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Outer, path) == cfg


def test_file_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ninner:\n  c: 1\n")
    cfg = load_config(Outer, p, ["name=b", "backend=vllm"])
    assert (cfg.name, cfg.inner.c, cfg.inner.width, cfg.backend) == ("b", 1.0, 3, "vllm")
    assert isinstance(cfg.inner.c, float)


@pytest.mark.parametrize("overrides, message", [
    (["nme=x"], "unknown key 'nme' for Outer; known keys: name, inner, levels, backend, limit, verbose"),
    (["inner.depth=2"], "unknown key 'inner.depth' for Inner"),
    (["inner.width=three"], "inner.width: expected an integer, got 'three'"),
    (["inner.width=2.5"], "inner.width: expected an integer, got 2.5"),
    (["inner.width=0"], "inner: width must be >= 1, got 0"),
    (["backend=tgi"], "backend: 'tgi' is not one of 'transformers', 'vllm'"),
    (["verbose=maybe"], "verbose: expected true or false, got 'maybe'"),
    (["levels=easy"], "levels: expected a list, got str 'easy'"),
    (["limit=x"], "limit: 'x' is not a valid"),
    (["name"], "override 'name' is not of the form key=value"),
])
def test_bad_keys_and_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(Outer, overrides=overrides)
    assert message in str(info.value)


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="inner.width: expected an integer, got True"):
        from_dict(Outer, {"inner": {"width": True}})


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_config(Outer, p)
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Outer, tmp_path / "missing.yaml")


@dataclass
class Typed:
    n: int = 0
    flag: bool = False
    text: str = ""
    empty: str = "x"
    lr: float = 0.0
    prefix: str = ""
    nested: dict = field(default_factory=dict)


def test_override_values_are_read_by_field_type():
    cfg = load_config(Typed, overrides=["n=3", "flag=true", "text=hello world", "empty=", "lr=1e-3",
                                        "prefix=Step {i}: ", "nested={a: 1}"])
    assert cfg == Typed(n=3, flag=True, text="hello world", empty="", lr=0.001, prefix="Step {i}: ",
                        nested={"a": 1})
    assert parse_overrides(["a.b=3"]) == {"a": {"b": "3"}}


def test_prompt_config_validates():
    with pytest.raises(ConfigError, match="step_prefix must contain"):
        load_config(PromptConfig, overrides=["step_prefix=Step: "])
    assert load_config(PromptConfig, overrides=["step_prefix=## {i}. "]).step_prefix == "## {i}. "


def test_example_configs_load():
    from pathlib import Path

    from meds3.rollout import RolloutConfig

    configs = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("rollout*.yaml"))
    assert len(configs) == 2
    for path in configs:
        cfg = load_config(RolloutConfig, path)
        assert cfg.search.expansion_width == 3
    paper = load_config(RolloutConfig, configs[-1])
    assert (paper.search.max_nodes, paper.search.rollout_budget, paper.backend) == (60, 20, "vllm")


def test_ray_start_deadline_defaults_to_the_unit_deadline_and_is_checked():
    import pytest

    from meds3.rollout import RayConfig

    assert RayConfig(unit_timeout_s=30.0).start_deadline_s == 30.0
    assert RayConfig(unit_timeout_s=30.0, start_timeout_s=600.0).start_deadline_s == 600.0
    assert RayConfig(unit_timeout_s=None).start_deadline_s is None
    with pytest.raises(ValueError, match="start_timeout_s must be > 0 or null"):
        RayConfig(start_timeout_s=0)
