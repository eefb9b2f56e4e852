"""Bad values (issue 15, item 8): NaN, infinite and out-of-range config values are
ConfigErrors naming the key; ``2e-4`` in YAML is a number; config files in other encodings,
deeply nested or huge-integer JSON, an unknown --format and options past Z are clear errors."""

from __future__ import annotations

import json
import math

import pytest

from meds3.cli import main
from meds3.config import ConfigError, from_dict, load_config
from meds3.data import DataError, load_questions
from meds3.engines.types import SamplingParams
from meds3.eval import EvalConfig
from meds3.evolve import EvolveConfig
from meds3.infer.sampler import SamplerConfig
from meds3.mcts import SearchConfig
from meds3.rollout import RolloutConfig
from meds3.train.policy import PolicyTrainConfig
from meds3.train.prm import PRMTrainConfig

NAN, INF = float("nan"), float("inf")

BAD = [
    (PolicyTrainConfig, {"learning_rate": NAN}, "learning_rate"),
    (PolicyTrainConfig, {"learning_rate": INF}, "learning_rate"),
    (PolicyTrainConfig, {"epochs": NAN}, "epochs"),
    (PolicyTrainConfig, {"r": 100000}, "r (LoRA rank) must be at most 4096"),
    (PRMTrainConfig, {"r": 5000}, "r (LoRA rank) must be at most 4096"),
    (PolicyTrainConfig, {"output_dir": ""}, "output_dir must name a folder"),
    (PolicyTrainConfig, {"weight_decay": -0.1}, "weight_decay"),
    (RolloutConfig, {"search": {"temperature": NAN}}, "search.temperature"),
    (RolloutConfig, {"search": {"top_p": 1.5}}, "top_p must be in (0, 1]"),
    (RolloutConfig, {"search": {"rollout_temperature": INF}}, "search.rollout_temperature"),
    (RolloutConfig, {"search": {"exploration_constant": -1.0}}, "exploration_constant must be >= 0"),
    (RolloutConfig, {"search": {"exploration_constant": NAN}}, "search.exploration_constant"),
    (RolloutConfig, {"output_dir": ""}, "output_dir must name a folder"),
    (RolloutConfig, {"output_dir": "  "}, "output_dir must name a folder"),
    (EvalConfig, {"datasets": ["x"], "temperature": NAN}, "temperature"),
    (EvalConfig, {"datasets": ["x"], "temperature": -1}, "temperature must be"),
    (EvalConfig, {"datasets": ["x"], "top_p": 2.0}, "top_p must be in (0, 1]"),
    (EvalConfig, {"datasets": ["x"], "max_new_tokens": -5}, "max_new_tokens must be >= 1"),
    (EvalConfig, {"datasets": ["x"], "output_dir": ""}, "output_dir must name a folder"),
    (EvolveConfig, {"output_dir": ""}, "output_dir must name a folder"),
    (SamplerConfig, {"temperature": NAN}, "temperature"),
]


@pytest.mark.parametrize("cls, data, key", BAD, ids=[f"{c.__name__}-{'-'.join(d)}" for c, d, _ in BAD])
def test_bad_value_is_a_config_error_naming_the_key(cls, data, key):
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data)
    assert key in str(info.value)


def test_nan_in_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("learning_rate: .nan\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="learning_rate: must be a finite number"):
        load_config(PolicyTrainConfig, path)
    with pytest.raises(ConfigError, match="search.temperature: must be a finite number"):
        load_config(RolloutConfig, overrides=["search.temperature=nan"])


@pytest.mark.parametrize("make", [
    lambda: SearchConfig(temperature=NAN), lambda: SearchConfig(exploration_constant=-2.0),
    lambda: SamplingParams(temperature=NAN), lambda: PolicyTrainConfig(learning_rate=NAN),
    lambda: RolloutConfig(output_dir=""), lambda: SearchConfig(rollout_temperature=INF),
], ids=["search-nan-temp", "search-neg-c", "params-nan-temp", "train-nan-lr", "rollout-empty-dir", "inf-temp"])
def test_direct_construction_refuses_the_same_values(make):
    with pytest.raises(ValueError):
        make()


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("learning_rate: 2e-4\nepochs: 1e0\n", encoding="utf-8")
    config = load_config(PolicyTrainConfig, path)
    assert config.learning_rate == 2e-4 and isinstance(config.learning_rate, float) and config.epochs == 1.0
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text("search:\n  rollout_temperature: 1e0\n", encoding="utf-8")
    assert load_config(RolloutConfig, rollout).search.rollout_temperature == 1.0
    with pytest.raises(ConfigError, match="learning_rate: expected a number, got 'fast'"):
        from_dict(PolicyTrainConfig, {"learning_rate": "fast"})


@pytest.mark.parametrize("data, fragment", [
    ("learning_rate: 1.0e-4\n".encode("utf-16"), "UTF-16"),
    ("learning_rate: 1.0e-4\n".encode("utf-16-le"), "NUL bytes"),
    ("learning_rate: 1.0e-4\n".encode("utf-32"), "UTF-32"),
    ("base_model: x\n# café\n".encode("latin-1"), ":2: not valid UTF-8 (byte 0xe9)"),
], ids=["utf16-bom", "utf16-no-bom", "utf32", "latin1"])
def test_config_in_another_encoding_names_the_file(tmp_path, data, fragment):
    path = tmp_path / "train.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(PolicyTrainConfig, path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    path.write_bytes(b"\xef\xbb\xbflearning_rate: 1e-3\n")  # UTF-8 with a byte-order mark is fine
    assert load_config(PolicyTrainConfig, path).learning_rate == 1e-3


def test_config_cli_with_utf16_file_exits_2(tmp_path, capsys):
    path = tmp_path / "rollout.yaml"
    path.write_bytes("limit: 1\n".encode("utf-16"))
    assert main(["rollout", "--config", str(path)]) == 2
    assert "UTF-16" in capsys.readouterr().err


GOOD = {"id": "ok", "question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "B"}


def test_deeply_nested_json_line_is_a_data_error(tmp_path):
    path = tmp_path / "seed.jsonl"
    deep = "[" * 100000 + "]" * 100000
    path.write_text(json.dumps(GOOD) + "\n" + deep + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: JSON nested too deeply"):
        load_questions(path)
    assert [q.id for q in load_questions(path, on_error="skip")] == ["ok"]


def test_deeply_nested_json_document_is_a_data_error(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        load_questions(path)


def test_nesting_under_the_parser_limit_but_too_deep_to_store(tmp_path):
    path = tmp_path / "seed.jsonl"
    record = dict(GOOD, metadata={"x": json.loads("[" * 500 + "]" * 500)})
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_questions(path)
    assert "nested more than 64 levels" in str(info.value) and info.value.field.startswith("metadata.x")


@pytest.mark.parametrize("where", ["answer", "id", "metadata"])
def test_huge_integer_is_a_data_error(tmp_path, where):
    huge = "9" * 5000
    record = {"id": "big", "question": "How many?", "answer": "5", "task_type": "numeric", "metadata": {}}
    text = json.dumps(record).replace('"5"', huge) if where == "answer" else (
        json.dumps(record).replace('"big"', huge) if where == "id" else json.dumps(record).replace("{}", huge))
    path = tmp_path / "seed.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: JSON value cannot be read"):
        load_questions(path)
    doc = tmp_path / "seed.json"
    doc.write_text("[" + text + "]", encoding="utf-8")
    with pytest.raises(DataError, match="JSON value cannot be read"):
        load_questions(doc)


def test_gold_number_too_large_for_a_float_is_a_data_error(tmp_path):
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps({"id": "big", "question": "How many?", "answer": "9" * 400,
                                "task_type": "numeric"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="is not a finite number"):
        load_questions(path)
    assert math.isinf(float("9" * 400))  # what the verifier would have compared against


def test_verify_command_on_invalid_question_exits_2(tmp_path, capsys):
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps({"id": "bad", "question": "BMI?", "answer": "abc", "task_type": "numeric"}) + "\n",
                    encoding="utf-8")
    assert main(["verify", str(path), "--id", "bad", "--text", "The answer is 5."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meds3: error: ") and "numeric answer 'abc' is not a number" in err


def test_data_check_unknown_format_exits_2(tmp_path, capsys):
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    assert main(["data", "check", "--format", "bogus", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--format 'bogus' is not a known format" in err and "medqa" in err
    assert main(["data", "check", "--format", "medsss", str(path)]) == 1  # an alias is a known format


def test_options_beyond_z_are_an_error(tmp_path):
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps({"id": "many", "question": "Which?", "options": [f"opt {i}" for i in range(27)],
                                "answer": "A"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="has 27 options but options are lettered A-Z"):
        load_questions(path)
    path.write_text(json.dumps({"id": "ok", "question": "Which?", "options": [f"opt {i}" for i in range(26)],
                                "answer": "Z"}) + "\n", encoding="utf-8")
    assert load_questions(path)[0].answer == "Z"


def test_headqa_with_27_answers_is_an_error(tmp_path):
    path = tmp_path / "headqa.json"
    answers = [{"aid": i + 1, "atext": f"a{i}"} for i in range(27)]
    path.write_text(json.dumps([{"qid": 1, "qtext": "Which?", "answers": answers, "ra": 27}]), encoding="utf-8")
    with pytest.raises(DataError, match="has 27 options"):
        load_questions(path, format="headqa")
