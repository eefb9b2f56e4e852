"""seed_data/mix_paper.yaml: the paper-like seed mix (500 per dataset, by domain) and its fetchable seed sets."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from meds3.cli import main
from meds3.config import load_config
from meds3.data import fetch as fetch_mod
from meds3.data import load_questions
from meds3.data.fetch import fetch, normalize
from meds3.data.loaders import save_questions
from meds3.data.mix import MixManifest
from meds3.data.question import MedQuestion
from meds3.data.sources import SOURCES, get_source

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "seed_data" / "mix_paper.yaml"
FETCH_FIXTURES = Path(__file__).parent / "fixtures" / "fetch"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PER_DATASET = 500

# The documented balance (docs/data.md, "The paper's seed mix"): domain -> registry sets, 500 questions each.
BALANCE = {
    "long_context_qa": ["biomrc_train"],
    "knowledge_qa": ["medqa_train", "medmcqa_train", "headqa_en_dev"],
    "bio_literature_qa": ["pubmedqa_seed", "pubmedqa_artificial"],
    "fact_checking": ["healthfact_train"],
}
DOMAIN_OF = {name: domain for domain, names in BALANCE.items() for name in names}
# The evaluation set each new seed set is the training split of, and where the fixture file of that
# evaluation set goes to stand for the training split (same raw record shape, other split name).
NEW_SETS = {
    "medqa_train": ("medqa", {"phrases_no_exclude_test.jsonl": "phrases_no_exclude_train.jsonl"}),
    "medmcqa_train": ("medmcqa", {"data/validation-00000-of-00001.jsonl": "data/train-00000-of-00001.jsonl"}),
    "pubmedqa_artificial": ("pubmedqa_hf", {"pqa_labeled/train-00000-of-00001.jsonl":
                                            "pqa_artificial/train-00000-of-00001.jsonl"}),
    "biomrc_train": ("biomrc", {"biomrc_small_B/test/0000.jsonl": "biomrc_small_B/train/0000.jsonl"}),
    "healthfact_train": ("healthfact", {"default/test/0000.jsonl": "default/train/0000.jsonl"}),
}


def manifest_entries(path: Path = MANIFEST) -> list[tuple[str, str]]:
    """(path, domain) of each source, the domain read from its ``# domain:`` comment."""
    entries = []
    for line in path.read_text().splitlines():
        m = re.match(r"\s*- path: (\S+)\s+# domain: (\w+)", line)
        if m:
            entries.append((m.group(1), m.group(2)))
    return entries


def set_name(path: str) -> str:
    return Path(path).stem


@pytest.fixture(autouse=True)
def no_hub_network(monkeypatch):
    """huggingface_hub replaced by one that is offline: no test here may reach the network."""
    offline = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, **kw):
        raise ConnectionError(f"offline: {repo_id}@{kw['revision']}")

    offline.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", offline)


# ---------------------------------------------------------------- the manifest

def test_manifest_loads_and_matches_the_documented_balance():
    manifest = load_config(MixManifest, MANIFEST)
    entries = manifest_entries()
    assert [p for p, _ in entries] == [s.path for s in manifest.sources]  # every source has a domain comment
    assert all(s.n == PER_DATASET for s in manifest.sources)
    names = [set_name(s.path) for s in manifest.sources]
    assert len(names) == len(set(names)) == len(DOMAIN_OF) == 7
    assert {set_name(p): d for p, d in entries} == DOMAIN_OF
    per_domain = Counter()
    for s, (_, domain) in zip(manifest.sources, entries):
        per_domain[domain] += s.n
    assert per_domain == {d: PER_DATASET * len(n) for d, n in BALANCE.items()}
    assert sum(s.n for s in manifest.sources) == 3500


def test_docs_state_the_same_balance():
    docs = (REPO / "docs" / "data.md").read_text()
    section = docs[docs.index("## The paper's seed mix"):]
    for name in DOMAIN_OF:
        assert f"`{name}`" in section, name
    assert "3,500" in section and "16" in section


def test_every_manifest_file_is_a_fetched_seed_set():
    for path, _ in manifest_entries():
        target = (MANIFEST.parent / path).resolve()
        assert target.parent == REPO / "data" / "seed", path  # `meds3 data fetch NAME -o data/seed`
        source = get_source(target.stem)
        assert source.available and source.group == "seed", source.name
        assert source.split != "test", source.name


def test_new_seed_sets_are_training_splits_of_the_evaluation_sets():
    for name, (fixture_set, _) in NEW_SETS.items():
        seed = get_source(name)
        assert seed.repo == get_source(fixture_set).repo and seed.split == "train", name
        assert seed.license and seed.note and seed.size > PER_DATASET, name
    evaluated = {"medqa_train": "medqa", "medmcqa_train": "medmcqa", "biomrc_train": "biomrc",
                 "healthfact_train": "healthfact", "pubmedqa_artificial": "pubmedqa"}
    for name, eval_name in evaluated.items():
        # the evaluation set reads another split of the same origin (PubMedQA: PQA-L test vs PQA-A)
        assert get_source(eval_name).split in ("test", "validation") and get_source(name).split == "train", name
    assert set(NEW_SETS) <= set(SOURCES)


# ---------------------------------------------------------------- fetching the new seed sets

def fake_hub_cache(tmp_path: Path, name: str) -> Path:
    """A Hugging Face cache holding the evaluation set's fixture files under the training split's names."""
    source = get_source(name)
    eval_name, renames = NEW_SETS[name]
    cache = tmp_path / "hub"
    root = cache / ("datasets--" + source.repo.replace("/", "--"))
    (root / "refs" / source.revision).parent.mkdir(parents=True, exist_ok=True)
    (root / "refs" / source.revision).write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    for old, new in renames.items():
        (snap / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FETCH_FIXTURES / eval_name / old, snap / new)
    return cache


@pytest.mark.parametrize("name", sorted(NEW_SETS))
def test_new_seed_set_fetches_from_source_shaped_records(name, tmp_path):
    out = tmp_path / "data" / "seed"
    result = fetch([name], out, hub_cache=fake_hub_cache(tmp_path, name), stream=io.StringIO())
    assert result.fetched == [name], result.failed
    rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
    assert rows and all(r["metadata"].get("split", "train") != "test" for r in rows)
    assert rows[0]["license"] == get_source(name).license
    assert json.loads((out / "manifest.json").read_text())["sets"][name]["split"] == "train"
    qs = load_questions(out / f"{name}.jsonl")
    assert [q.id for q in qs] == [r["id"] for r in rows]
    # the same raw records as the evaluation set's fixture: the same questions and gold answers
    eval_name, renames = NEW_SETS[name]
    eval_rows, _ = normalize(get_source(eval_name), fetch_mod.Download(
        [FETCH_FIXTURES / eval_name / old for old in renames], COMMIT, "x"))
    assert [(r["question"], r["answer"], r["options"]) for r in rows] == \
        [(r["question"], r["answer"], r["options"]) for r in eval_rows]


def test_health_fact_training_split_drops_unlabelled_claims(tmp_path):
    out = tmp_path / "seed"
    fetch(["healthfact_train"], out, hub_cache=fake_hub_cache(tmp_path, "healthfact_train"),
          stream=io.StringIO())
    raw = (FETCH_FIXTURES / "healthfact" / "default" / "test" / "0000.jsonl").read_text().splitlines()
    labelled = [r for r in map(json.loads, raw) if r.get("label", -1) != -1]
    assert len(load_questions(out / "healthfact_train.jsonl")) == len(labelled) < len(raw)


# ---------------------------------------------------------------- `meds3 seeds build` on stand-in files

def write_stand_ins(root: Path, per_file: int = PER_DATASET + 20) -> Path:
    """Tiny files at the manifest's paths (``root/data/seed/<name>.jsonl``); the manifest copied to
    ``root/seed_data``, so its relative paths resolve to them unchanged."""
    for name, domain in DOMAIN_OF.items():
        save_questions(root / "data" / "seed" / f"{name}.jsonl", [
            MedQuestion(id=f"{name}_{i}", question=f"{name} question {i}?", options={"A": "yes", "B": "no"},
                        answer="AB"[i % 2], domain=domain, source=name) for i in range(per_file)])
    manifest = root / "seed_data" / "mix_paper.yaml"
    manifest.parent.mkdir(parents=True)
    shutil.copy(MANIFEST, manifest)
    return manifest


def test_seeds_build_draws_the_balance_deterministically(tmp_path, capsys):
    manifest = write_stand_ins(tmp_path)
    out = tmp_path / "data" / "seed" / "mix_paper.jsonl"
    assert main(["seeds", "build", str(manifest), "-o", str(out)]) == 0
    assert "wrote 3500 questions" in capsys.readouterr().out
    qs = load_questions(out)
    assert Counter(q.source for q in qs) == {name: PER_DATASET for name in DOMAIN_OF}
    assert Counter(q.domain for q in qs) == {d: PER_DATASET * len(n) for d, n in BALANCE.items()}
    assert len({q.id for q in qs}) == 3500
    assert len({q.source for q in qs[:50]}) > 1  # interleaved, not file after file
    first = out.read_bytes()
    again = tmp_path / "again.jsonl"
    assert main(["seeds", "build", str(manifest), "-o", str(again)]) == 0
    assert again.read_bytes() == first  # same manifest and seed -> same mix
    other = tmp_path / "seed1.jsonl"
    assert main(["seeds", "build", str(manifest), "seed=1", "-o", str(other)]) == 0
    other_qs = load_questions(other)
    assert Counter(q.source for q in other_qs) == Counter(q.source for q in qs)
    assert {q.id for q in other_qs} != {q.id for q in qs}


def test_seeds_build_names_a_missing_fetch(tmp_path, capsys):
    manifest = write_stand_ins(tmp_path)
    (tmp_path / "data" / "seed" / "medmcqa_train.jsonl").unlink()
    assert main(["seeds", "build", str(manifest), "-o", str(tmp_path / "mix.jsonl")]) == 2
    assert "medmcqa_train.jsonl" in capsys.readouterr().err


def test_seeds_build_refuses_a_short_file(tmp_path, capsys):
    manifest = write_stand_ins(tmp_path, per_file=PER_DATASET - 1)
    assert main(["seeds", "build", str(manifest), "-o", str(tmp_path / "mix.jsonl")]) == 2
    assert "asks for 500 questions" in capsys.readouterr().err
