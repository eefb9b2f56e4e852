"""meds3.hub offline: the reference rule, and push -> load-by-id round trips of a tiny policy
adapter, a tiny PRM, training records and rollout trees through a folder hub (``FolderHub``,
the same three calls as ``huggingface_hub.HfApi``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from model_paths import model_path
from train_trees import question, write_trees

from meds3.cards import flat_settings
from meds3.hub import (
    HUB_DIR_ENV,
    FolderHub,
    HubError,
    HubRef,
    parse_hub_ref,
    push_adapter,
    push_dataset,
    push_prm,
    resolve_hub,
)


# ---------------------------------------------------------------------------- the reference rule
def test_parse_hub_ref_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "local" / "thing").mkdir(parents=True)
    assert parse_hub_ref("hf://me/policy") == HubRef("me/policy", "model", None)
    assert parse_hub_ref("hf://datasets/me/trees@v2") == HubRef("me/trees", "dataset", "v2")
    assert parse_hub_ref("hf://models/me/prm", "dataset") == HubRef("me/prm", "model", None)
    assert parse_hub_ref("me/trees", "dataset") == HubRef("me/trees", "dataset", None)
    # existing or path-shaped names stay paths
    for path in ("local/thing", "runs/policy", "./me/policy", "../me/policy", "/me/policy", "~/me",
                 "a/b/c", "me/policy/", "policy"):
        assert parse_hub_ref(path) is None, path
    assert parse_hub_ref(Path("me/policy")) is None  # a Path object is always a path
    assert parse_hub_ref("hf://local/thing") == HubRef("local/thing")  # hf:// always means the Hub
    with pytest.raises(ValueError, match=r"'hf://me/a/b': after hf:// expected"):
        parse_hub_ref("hf://me/a/b")


def test_resolve_hub_local_and_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hub = FolderHub(tmp_path / "hub")
    (tmp_path / "runs").mkdir()
    assert resolve_hub("runs/x", api=hub) == Path("runs/x")  # missing, but runs/ exists: a path the caller reports
    (tmp_path / "me" / "policy").mkdir(parents=True)
    assert resolve_hub("me/policy", api=hub) == Path("me/policy")  # exists here: local wins
    with pytest.raises(HubError, match=r"other/policy: not a local path; as the Hugging Face model "
                                       r"repository 'other/policy' it could not be downloaded \(FileNotFoundError"):
        resolve_hub("other/policy", api=hub)
    monkeypatch.setenv(HUB_DIR_ENV, str(tmp_path / "hub"))  # the default hub follows the variable
    hub.create_repo("other/policy")
    assert resolve_hub("hf://other/policy") == tmp_path / "hub" / "models" / "other" / "policy"
    with pytest.raises(HubError, match="keeps no revisions"):
        resolve_hub("hf://other/policy@v1")


def test_folder_hub_upload_adds_and_replaces(tmp_path):
    hub = FolderHub(tmp_path / "hub")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("1")
    (src / "sub" / "b.txt").write_text("2")
    with pytest.raises(FileNotFoundError, match="create_repo first"):
        hub.upload_folder(repo_id="me/d", folder_path=src, repo_type="dataset")
    hub.create_repo("me/d", repo_type="dataset")
    with pytest.raises(FileExistsError):
        hub.create_repo("me/d", repo_type="dataset")
    hub.upload_folder(repo_id="me/d", folder_path=src, repo_type="dataset")
    (src / "a.txt").write_text("3")
    (src / "sub" / "b.txt").unlink()
    hub.upload_folder(repo_id="me/d", folder_path=src, repo_type="dataset")
    root = Path(hub.snapshot_download("me/d", repo_type="dataset"))
    assert root == tmp_path / "hub" / "datasets" / "me" / "d"
    assert (root / "a.txt").read_text() == "3" and (root / "sub" / "b.txt").read_text() == "2"
    with pytest.raises(ValueError, match="owner/name"):
        hub.repo_dir("just-a-name")


def test_flat_settings_drop_paths_and_prompt():
    settings = {"trees": ["/home/me/t"], "output_dir": "/x", "base_model": "b", "prompt": {"system": "..."},
                "r": 8, "data": {"top_k": 2, "inner": {"x": None}}}
    assert flat_settings(settings) == {"r": 8, "data.top_k": 2, "data.inner.x": None}


# ---------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A rollout folder, and a tiny policy and PRM trained on it (a few steps each)."""
    from meds3.train import PolicyTrainConfig, PRMTrainConfig, train_policy, train_prm

    model_path()
    root = tmp_path_factory.mktemp("hub")
    write_trees(root / "rollout", n_questions=2)
    common = dict(trees=[str(root / "rollout")], base_model="tiny-random-llama", r=4, alpha=8, dropout=0.0,
                  learning_rate=1e-2, max_steps=2, batch_size=4)
    train_policy(PolicyTrainConfig(output_dir=str(root / "policy"), **common), progress=False)
    train_prm(PRMTrainConfig(output_dir=str(root / "prm"), **common), progress=False)
    return root


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv(HUB_DIR_ENV, str(tmp_path / "hub"))
    return FolderHub(tmp_path / "hub")


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_policy_adapter_round_trip(runs, hub, tmp_path):
    from huggingface_hub import ModelCard

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.md").write_text("| dataset | accuracy |\n|---|---|\n| medqa | 0.25 |\n")
    url = push_adapter(runs / "policy", "me/policy", datasets=["me/sft"], eval_report=tmp_path / "eval")
    assert url == str(tmp_path / "hub" / "models" / "me" / "policy")
    local = resolve_hub("hf://me/policy")
    assert {p.name for p in local.iterdir()} == {p.name for p in (runs / "policy" / "adapter").iterdir()} | {
        "README.md", "config.yaml", "loss.png", "summary.json"}
    for name in ("adapter_config.json", "meds3_train.json", "config.yaml", "summary.json", "loss.png", "README.md"):
        assert (local / name).is_file(), name
    assert not (local / "data.jsonl").exists()  # records are a dataset push, not part of the model
    saved, loaded = _tensors(runs / "policy" / "adapter"), _tensors(local)
    assert saved.keys() == loaded.keys() and len(saved) > 0
    assert all((saved[k] == loaded[k]).all() for k in saved)

    card = ModelCard.load(local / "README.md")
    assert card.data.library_name == "peft" and card.data.datasets == ["me/sft"]
    assert card.data.base_model is None  # tiny-random-llama has no Hub id: named in the text only
    assert "meds3" in card.data.tags and "policy" in card.data.tags
    assert "Base model: `tiny-random-llama`" in card.text
    for row in ("| `r` | 4 |", "| `learning_rate` | 0.01 |", "| `max_steps` | 2 |", "| `batch_size` | 4 |"):
        assert row in card.text, row
    assert "| `steps` | 2 |" in card.text  # from summary.json
    assert "## Evaluation\n\n| dataset | accuracy |\n|---|---|\n| medqa | 0.25 |" in card.text
    assert str(runs) not in card.content  # no local path leaks into the card


def test_engine_serves_an_adapter_by_hub_id(runs, hub):
    from meds3.engines import GenerationRequest, SamplingParams, build_engine

    push_adapter(runs / "policy" / "adapter", "me/policy")  # the adapter folder itself works too
    from transformers import AutoTokenizer

    from meds3.data.prompts import render_prompt

    engine = build_engine("tiny-random-llama", backend="transformers")
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    prompt = render_prompt(question(), AutoTokenizer.from_pretrained(str(runs / "policy" / "adapter")))
    by_path, by_id = engine.generate([
        GenerationRequest(prompt=prompt, params=params, adapter=str(runs / "policy" / "adapter")),
        GenerationRequest(prompt=prompt, params=params, adapter="me/policy")])  # a bare owner/name
    assert by_path.samples[0].token_ids == by_id.samples[0].token_ids


def test_prm_round_trip_scores_equal(runs, hub):
    from huggingface_hub import ModelCard

    from meds3.data.prompts import ROOT_STEP
    from meds3.train.scorer import PRMScorer

    push_prm(runs / "prm", "me/prm")
    trajs = [[ROOT_STEP, "BMI is weight over height squared.", "The answer is B."], [ROOT_STEP, "The answer is D."]]
    local = PRMScorer(runs / "prm", device="cpu").score(question(), trajs)
    by_id = PRMScorer("me/prm", device="cpu").score(question(), trajs)  # a bare owner/name
    assert by_id == local and [len(s) for s in by_id] == [3, 2]
    card = ModelCard.load(resolve_hub("hf://me/prm") / "README.md")
    assert card.data.library_name == "meds3" and "prm" in card.data.tags
    assert 'PRMScorer("hf://me/prm")' in card.text and "| `loss` | bce |" in card.text


def test_push_refuses_the_wrong_kind_and_missing_input(runs, hub, tmp_path):
    with pytest.raises(ValueError, match=r"meds3_train.json: adapter kind is 'prm', not 'policy'"):
        push_adapter(runs / "prm", "me/policy")
    with pytest.raises(FileNotFoundError, match="no PRM adapter"):
        push_prm(tmp_path, "me/prm")
    with pytest.raises(FileNotFoundError, match="no eval report"):
        push_adapter(runs / "policy", "me/policy", eval_report=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="kind must be one of trees, sft, prm, got 'rows'"):
        push_dataset(runs / "policy", "me/d", kind="rows")
    with pytest.raises(FileNotFoundError, match="no tree shards"):
        push_dataset(tmp_path, "me/d", kind="trees")
    with pytest.raises(FileNotFoundError, match="no sft records file"):
        push_dataset(tmp_path, "me/d", kind="sft")


@pytest.mark.parametrize("kind", ["sft", "prm"])
def test_records_dataset_loads_back_with_datasets(runs, hub, kind, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from meds3.train import read_jsonl

    run = runs / ("policy" if kind == "sft" else "prm")
    push_dataset(run, f"me/{kind}", kind=kind)
    local = resolve_hub(f"hf://datasets/me/{kind}")
    # a fresh cache: the pytest folders' names repeat across runs, and datasets' cache would match them
    loaded = load_dataset(str(local), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.to_list() == list(read_jsonl(run / "data.jsonl"))
    card = DatasetCard.load(local / "README.md")
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data.jsonl"}]}]
    assert f"{len(loaded)} records." in card.text and kind in card.data.tags


def test_trees_dataset_round_trip(runs, hub):
    from meds3.rollout.store import read_trees
    from meds3.train.data import iter_trees

    push_dataset(runs / "rollout", "me/trees", kind="trees")
    local = [t.to_dict() for t in read_trees(runs / "rollout" / "trees")]
    assert [t.to_dict() for t in read_trees("hf://datasets/me/trees")] == local
    by_id = list(iter_trees("me/trees"))  # a bare id: trees are looked up as a dataset repository
    assert [t.to_dict() for t in by_id] == [t.to_dict() for t in iter_trees(runs / "rollout")]
    assert {t.source for t in by_id} == {"me/trees"}
    assert [t["question"]["id"] for t in local] == ["q1", "q2"]


def test_cli_pushes_after_training(runs, hub, tmp_path, capsys):
    from meds3.cli import main

    out = tmp_path / "cli-policy"
    assert main(["train", "policy", "--trees", str(runs / "rollout"), "--base", "tiny-random-llama", "-o", str(out),
                 "--no-progress", "--push-to-hub", "me/cli", "max_steps=1", "r=2", "alpha=4"]) == 0
    json.loads(capsys.readouterr().out)  # stdout is still the JSON summary alone
    pushed = resolve_hub("hf://me/cli")
    assert _tensors(pushed).keys() == _tensors(out / "adapter").keys()
    assert "| `r` | 2 |" in (pushed / "README.md").read_text()
    assert main(["train", "prm", "--trees", "nobody/none", "--base", "tiny-random-llama", "-o", str(out)]) == 2
    assert "nobody/none: not a local path; as the Hugging Face dataset repository" in capsys.readouterr().err


def test_cli_pushes_trees_after_rollout(hub, tmp_path, monkeypatch, capsys):
    """``meds3 rollout --push-to-hub``: the search itself is replaced by writing two trees."""
    from types import SimpleNamespace

    import meds3.rollout
    from meds3.cli import main
    from meds3.train.data import iter_trees

    def search(config, progress=True, **_):
        write_trees(Path(config.output_dir), n_questions=2)
        return SimpleNamespace(to_dict=lambda: {"trees": 2})

    monkeypatch.setattr(meds3.rollout, "run_rollout", search)
    out = tmp_path / "rollout"
    assert main(["rollout", f"output_dir={out}", "--no-progress", "--push-to-hub", "me/cli-trees"]) == 0
    assert json.loads(capsys.readouterr().out) == {"trees": 2}
    assert [t.question.id for t in iter_trees("hf://datasets/me/cli-trees")] == ["q1", "q2"]
    assert "2 trees." in (resolve_hub("hf://datasets/me/cli-trees") / "README.md").read_text()


def test_card_names_hub_trees_and_the_base_hub_id(runs, hub, tmp_path):
    """A run trained on Hub trees, on the embedded SmolLM2 alias: the card and the pushed
    adapter config name Hub ids (no training: a copy of the run with edited records)."""
    import yaml
    from huggingface_hub import ModelCard

    run = tmp_path / "run"
    shutil.copytree(runs / "policy", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(trees=["hf://datasets/me/trees", "runs/local"], base_model="smollm2-135m-instruct")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    meta = json.loads((run / "adapter" / "meds3_train.json").read_text())
    (run / "adapter" / "meds3_train.json").write_text(json.dumps({**meta, "base_model": "smollm2-135m-instruct"}))
    local = Path(push_adapter(run, "me/smol", datasets=["me/sft"]))
    card = ModelCard.load(local / "README.md")
    assert card.data.datasets == ["me/sft", "me/trees"]
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    adapter_config = json.loads((local / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads((run / "adapter" / "adapter_config.json").read_text()) != adapter_config  # the run is untouched
