"""``meds3 data fetch``: the registry, its normalizers on records shaped like each source's, and
fetching end to end with no network (a fake Hub cache, a fake GitHub, a fake downloader)."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from meds3.cli.fetch_cmd import add_fetch_parser
from meds3.data import fetch as fetch_mod
from meds3.data import load_questions
from meds3.data.fetch import Download, FetchError, fetch, list_sources, normalize, read_manifest, sha256_file
from meds3.data.sources import SOURCES, Source, get_source

FIXTURES = Path(__file__).parent / "fixtures" / "fetch"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIXTURE_DIR = {"pubmedqa_seed": "pubmedqa"}  # sets sharing another set's raw files


def fixture_root(name: str) -> Path:
    return FIXTURES / FIXTURE_DIR.get(name, name)


def fake_hub_cache(tmp_path: Path, source: Source, revision: str | None = None) -> Path:
    """A folder laid out like huggingface_hub's cache, holding the set's fixture files."""
    revision = revision or source.revision
    cache = tmp_path / "hub"
    root = cache / ("datasets--" + source.repo.replace("/", "--"))
    (root / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    if not snap.exists():
        shutil.copytree(fixture_root(source.name), snap)
    return cache


@pytest.fixture(autouse=True)
def no_hub_network(monkeypatch):
    """huggingface_hub replaced by one that is offline: no test here may reach the network."""
    offline = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, **kw):
        raise ConnectionError(f"offline: {repo_id}@{kw['revision']}")

    offline.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", offline)


@pytest.fixture
def fake_github(monkeypatch):
    """raw.githubusercontent.com served from the fixture folders; records the URLs asked for."""
    asked: list[str] = []

    def urlopen(url, timeout=None):
        asked.append(url)
        prefix = fetch_mod.GITHUB_RAW + "/"
        repo_rev_path = url[len(prefix):].split("/")
        repo, path = "/".join(repo_rev_path[:2]), "/".join(repo_rev_path[3:])
        for name, s in SOURCES.items():
            if s.kind == "github" and s.repo == repo and path in s.paths:
                return open(fixture_root(name) / path, "rb")
        raise fetch_mod.urllib.error.URLError(f"404 {url}")

    monkeypatch.setattr(fetch_mod, "urlopen", urlopen)
    return asked


FETCHABLE = [n for n, s in SOURCES.items() if s.available]

# What the first question of each set's fixture normalizes to: (id, answer, task type, n options).
EXPECTED = {
    "medqa": ("medqa_0", "D", "multiple_choice", 4),
    "medqa_5opt": ("medqa_5opt_0", "E", "multiple_choice", 5),
    "medmcqa": ("45258d3d-b974-44dd-a161-c3fccbdadd88", "A", "multiple_choice", 4),
    "pubmedqa": ("pubmedqa_21645374", "A", "multiple_choice", 3),
    "pubmedqa_hf": ("pubmedqa_21645374", "A", "multiple_choice", 3),
    "mmlu_medical": ("mmlu_anatomy_test_0", "A", "multiple_choice", 4),
    "mmlu_nutrition_virology": ("mmlu_nutrition_test_0", "C", "multiple_choice", 4),
    "bioasq": ("bioasq_bioasq_0", "B", "multiple_choice", 2),
    "pubhealth": ("pubhealth_pubhealth_0", "B", "multiple_choice", 3),
    "drugdose": ("drugdose_drug_dose_0", "high", "span", 0),
    "biomrc": ("biomrc_0", "B", "multiple_choice", 2),
    "healthfact": ("15661", "B", "multiple_choice", 4),
    "mmlu_pro_health": ("mmlu_pro_6040", "J", "multiple_choice", 10),
    "gpqa_medical": ("gpqa_recX7AbC", None, "multiple_choice", 4),
    "medbullets_op4": ("medbullets_op4_0", "C", "multiple_choice", 4),
    "medbullets_op5": ("medbullets_op5_0", "C", "multiple_choice", 5),
    "medxpertqa_text": ("medxpertqa_Text-0", "C", "multiple_choice", 10),
    "pubmedqa_seed": ("pubmedqa_16418930", "B", "multiple_choice", 3),
    "headqa_en_dev": ("headqa_en_Cuaderno_2015_1_B_1", "D", "multiple_choice", 4),
    "medqa_train": ("medqa_train_0", "D", "multiple_choice", 4),
    "medmcqa_train": ("45258d3d-b974-44dd-a161-c3fccbdadd88", "A", "multiple_choice", 4),
    "pubmedqa_artificial": ("pubmedqa_21645374", "A", "multiple_choice", 3),
    "biomrc_train": ("biomrc_train_0", "B", "multiple_choice", 2),
    "healthfact_train": ("15661", "B", "multiple_choice", 4),
}


def test_every_fetchable_set_has_a_fixture_and_an_expectation():
    assert sorted(EXPECTED) == sorted(FETCHABLE)
    for name in FETCHABLE:
        assert fixture_root(name).is_dir(), name
        assert get_source(name).normalizer is not None


def test_registry_covers_both_papers():
    meds3 = {"medqa", "medmcqa", "pubmedqa", "mmlu_medical", "bioasq", "pubhealth", "drugdose", "biomrc", "ddxplus",
             "healthfact", "seer"}
    m1 = {"mmlu_pro_health", "gpqa_medical", "medbullets_op4", "medbullets_op5", "medxpertqa_text", "lancet", "nejm"}
    assert meds3 <= {n for n, s in SOURCES.items() if s.group == "meds3"}
    assert m1 <= {n for n, s in SOURCES.items() if s.group == "m1"}
    for s in SOURCES.values():
        assert s.license and s.split, s.name
        if s.available:
            assert s.kind in ("hf", "github") and s.repo and s.paths, s.name
        else:
            assert s.reason, s.name
        if s.kind == "github":
            assert len(s.revision) == 40, f"{s.name}: GitHub files are pinned to a commit"


@pytest.mark.parametrize("name", FETCHABLE)
def test_normalizer_on_source_shaped_records(name, tmp_path, fake_github):
    source = get_source(name)
    if source.kind == "hf":
        got = fetch_mod.download_hf(source, source.revision, fake_hub_cache(tmp_path, source))
        assert got.revision == COMMIT
    else:
        got = fetch_mod.download_github(source, source.revision)
        assert got.revision == source.revision
    rows, problems = normalize(source, got)
    if got.temporary is not None:
        shutil.rmtree(got.temporary)
    assert not problems
    first = rows[0]
    qid, answer, task_type, n_options = EXPECTED[name]
    assert first["id"].endswith(qid)  # formats.py's converter or the registry's own
    assert first["task_type"] == task_type
    assert len(first["options"]) == n_options
    if answer is not None:
        assert first["answer"] == answer
    assert first["question"] and "Answer Choices" not in first["question"]
    assert first["license"] == source.license
    assert first["origin"].startswith(f"{source.repo}@{got.revision}")
    # every row reads back through the project's loader as the same question
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs = load_questions(path)
    assert [q.id for q in qs] == [r["id"] for r in rows]
    assert [q.answer for q in qs] == [r["answer"] for r in rows]


def test_normalizer_details():
    mmlu = get_source("mmlu_medical")
    got = Download(sorted((FIXTURES / "mmlu_medical").rglob("*.jsonl")), COMMIT, "x")
    rows, _ = normalize(mmlu, got)
    assert [r["metadata"]["subject"] for r in rows] == ["anatomy", "college_medicine"]
    # filters: MMLU-Pro keeps health only, health_fact drops unlabelled claims, GPQA keeps biology
    for name, n in (("mmlu_pro_health", 1), ("healthfact", 2), ("gpqa_medical", 1)):
        s = get_source(name)
        rows, _ = normalize(s, Download(sorted(p for p in (FIXTURES / name).rglob("*") if p.is_file()), COMMIT, "x"))
        assert len(rows) == n, name
    gpqa = rows[0]
    assert gpqa["options"][gpqa["answer"]] == "R-loops"
    # PubMedQA: the test split and the seed split are disjoint, both from the same two files
    files = sorted((FIXTURES / "pubmedqa").rglob("*.json"))
    test, _ = normalize(get_source("pubmedqa"), Download(files, COMMIT, "x"))
    seed, _ = normalize(get_source("pubmedqa_seed"), Download(files, COMMIT, "x"))
    assert {r["id"] for r in test}.isdisjoint({r["id"] for r in seed})
    assert test[0]["metadata"]["context"].startswith("BACKGROUND: Programmed cell death")
    # MedQA (Hub copy): metamap phrases dropped, meta_info kept
    rows, _ = normalize(get_source("medqa"), Download([FIXTURES / "medqa" / "phrases_no_exclude_test.jsonl"],
                                                       COMMIT, "x"))
    assert "metamap_phrases" not in rows[0]["metadata"] and rows[0]["metadata"]["meta_info"] == "step2&3"


@pytest.mark.parametrize("name", ["biomrc", "healthfact"])
def test_registry_fallback_normalizers_agree_with_formats(name, monkeypatch):
    """The registry uses formats.py's converter when registered, else its own: same gold either way."""
    from meds3.data import formats

    source = get_source(name)
    files = sorted(p for p in (FIXTURES / name).rglob("*") if p.is_file())
    with_formats, _ = normalize(source, Download(files, COMMIT, "x"))
    monkeypatch.delitem(formats.FORMATS, name, raising=False)
    own, _ = normalize(source, Download(files, COMMIT, "x"))
    assert [r["answer"] for r in own] == [r["answer"] for r in with_formats]
    assert [len(r["options"]) for r in own] == [len(r["options"]) for r in with_formats]


@pytest.mark.parametrize("name", ["medmcqa", "mmlu_pro_health", "healthfact"])
def test_parquet_files_as_the_hub_serves_them(name, tmp_path):
    """The Hub serves these sets as Parquet: the same records written as Parquet read the same."""
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    source = get_source(name)
    src = next(p for p in fixture_root(name).rglob("*.jsonl"))
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    target = tmp_path / src.relative_to(fixture_root(name)).with_suffix(".parquet")
    target.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), target)
    from_jsonl, _ = normalize(source, Download([src], COMMIT, "x"))
    from_parquet, _ = normalize(source, Download([target], COMMIT, "x"))
    assert [(r["id"], r["answer"], r["options"]) for r in from_parquet] == \
        [(r["id"], r["answer"], r["options"]) for r in from_jsonl]


def test_malformed_record_is_skipped_and_reported(tmp_path):
    bad = tmp_path / "validation-0.jsonl"
    good = json.loads((FIXTURES / "medmcqa" / "data" / "validation-00000-of-00001.jsonl").read_text().splitlines()[0])
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "x", "cop": 7}) + "\n")
    rows, problems = normalize(get_source("medmcqa"), Download([bad], COMMIT, "x"))
    assert len(rows) == 1 and len(problems) == 1 and "cop" in problems[0]


# ---------------------------------------------------------------- fetch end to end

class FakeDownloader:
    """Serves fixture files; ``fail`` names sets whose download raises."""

    def __init__(self, fail=()):
        self.calls: list[tuple[str, str]] = []
        self.fail = set(fail)

    def __call__(self, source, revision, hub_cache=None):
        self.calls.append((source.name, revision))
        url = source.urls(revision)[0]
        if source.name in self.fail:
            raise FetchError(f"{source.name}: could not download {url}: connection refused")
        files = sorted(p for p in fixture_root(source.name).rglob("*") if p.is_file())
        return Download(files, COMMIT if source.kind == "hf" else revision, url)


def test_fetch_writes_jsonl_and_checksummed_manifest_and_resumes(tmp_path):
    out, log = tmp_path / "eval", io.StringIO()
    dl = FakeDownloader()
    result = fetch(["medqa", "bioasq"], out, downloader=dl, stream=log)
    assert result.fetched == ["medqa", "bioasq"] and result.ok
    text = log.getvalue()
    # the license is printed before the download of each set
    assert text.index("medqa: license: MIT (jind11/MedQA)") < text.index("ok   medqa")
    assert "bioasq: license: not stated" in text
    manifest = read_manifest(out)
    for name in ("medqa", "bioasq"):
        entry = manifest["sets"][name]
        assert entry["sha256"] == sha256_file(out / f"{name}.jsonl")
        assert entry["questions"] == len((out / f"{name}.jsonl").read_text().splitlines())
        assert entry["license"] == get_source(name).license and entry["fetched_at"]
    assert manifest["sets"]["medqa"]["revision"] == "main"
    assert manifest["sets"]["medqa"]["resolved_revision"] == COMMIT
    assert manifest["sets"]["bioasq"]["resolved_revision"] == get_source("bioasq").revision
    assert load_questions(out / "medqa.jsonl")[0].answer == "D"

    # resumable: nothing is fetched again
    again = fetch(["medqa", "bioasq"], out, downloader=dl, stream=io.StringIO())
    assert again.skipped == ["medqa", "bioasq"] and len(dl.calls) == 2
    # a changed (or truncated) output no longer matches its checksum: fetched again
    (out / "bioasq.jsonl").write_text("")
    again = fetch(["medqa", "bioasq"], out, downloader=dl, stream=io.StringIO())
    assert again.skipped == ["medqa"] and again.fetched == ["bioasq"]
    # --force refetches; another --revision refetches too and is recorded
    again = fetch(["medqa"], out, downloader=dl, force=True, stream=io.StringIO())
    assert again.fetched == ["medqa"]
    again = fetch(["medqa"], out, downloader=dl, revision="v1.0", stream=io.StringIO())
    assert again.fetched == ["medqa"] and dl.calls[-1] == ("medqa", "v1.0")
    assert read_manifest(out)["sets"]["medqa"]["revision"] == "v1.0"
    assert fetch(["medqa"], out, downloader=dl, revision=COMMIT, stream=io.StringIO()).skipped == ["medqa"]
    # back to the registry's pin: fetched again
    assert fetch(["medqa"], out, downloader=dl, stream=io.StringIO()).fetched == ["medqa"]
    assert dl.calls[-1] == ("medqa", "main")
    assert sorted(read_manifest(out)["sets"]) == ["bioasq", "medqa"]


def test_a_failing_set_is_reported_and_the_others_still_run(tmp_path):
    log = io.StringIO()
    result = fetch(["medqa", "pubmedqa", "seer"], tmp_path, downloader=FakeDownloader(fail=["medqa"]), stream=log)
    assert result.fetched == ["pubmedqa"] and result.unavailable == ["seer"]
    assert "medqa" in result.failed and "https://huggingface.co/datasets/GBaker/MedQA-USMLE-4-options" in log.getvalue()
    assert not (tmp_path / "medqa.jsonl").exists()
    assert "seer: no public source" in log.getvalue()


def test_github_network_error_names_set_and_url(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise fetch_mod.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch_mod, "urlopen", offline)
    log = io.StringIO()
    result = fetch(["drugdose"], tmp_path, stream=log)
    assert not result.ok
    assert "drugdose: could not download https://raw.githubusercontent.com/pixas/MedSSS/" in result.failed["drugdose"]


def test_hub_cache_fetch_without_network(tmp_path):
    source = get_source("mmlu_pro_health")
    cache = fake_hub_cache(tmp_path, source)
    result = fetch(["mmlu_pro_health"], tmp_path / "out", hub_cache=cache, stream=io.StringIO())
    assert result.fetched == ["mmlu_pro_health"]
    entry = read_manifest(tmp_path / "out")["sets"]["mmlu_pro_health"]
    assert entry["resolved_revision"] == COMMIT and entry["questions"] == 1


def test_hub_globs_are_alternatives(tmp_path):
    """medqa's globs: the JSONL copy, else a Parquet one; with both present only the first is read."""
    source = get_source("medqa")
    cache = fake_hub_cache(tmp_path, source)
    snap = cache / "datasets--GBaker--MedQA-USMLE-4-options" / "snapshots" / COMMIT
    (snap / "converted_test.parquet").write_bytes(b"not parquet")
    got = fetch_mod.download_hf(source, "main", cache)
    assert [p.name for p in got.files] == ["phrases_no_exclude_test.jsonl"]
    assert len(normalize(source, got)[0]) == 2
    # a revision missing from the cache goes to huggingface_hub, here offline (no_hub_network)
    missing = fetch(["medqa"], tmp_path / "out", revision="v9", hub_cache=cache, stream=io.StringIO())
    assert "could not download https://huggingface.co/datasets/GBaker/MedQA-USMLE-4-options/tree/v9" in \
        missing.failed["medqa"]


def test_unknown_name_raises_before_downloading(tmp_path):
    dl = FakeDownloader()
    with pytest.raises(KeyError, match="unknown data set 'nope'"):
        fetch(["medqa", "nope"], tmp_path, downloader=dl)
    assert dl.calls == []


# ---------------------------------------------------------------- CLI

def _parse(argv):
    parser = argparse.ArgumentParser(prog="meds3 data")
    sub = parser.add_subparsers(dest="data_command")
    add_fetch_parser(sub)
    return parser.parse_args(argv)


def test_list_names_every_set_with_source_license_size_split(capsys):
    args = _parse(["fetch", "--list"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES)
    for s, line in zip(SOURCES.values(), lines):
        assert line.startswith(s.name) and f"license: {s.license}" in line
        if s.available:
            assert s.location() in line and f"split: {s.split}" in line and f"size: ~{s.size}" in line
        else:
            assert "no public source" in line and s.reason in line
    list_sources(io.StringIO())


def test_cli_fetch_defaults_and_exit_codes(tmp_path, monkeypatch, fake_github, capsys):
    args = _parse(["fetch", "drugdose"])
    assert args.output_dir == "data/eval" and args.revision is None and not args.force
    args = _parse(["fetch", "drugdose", "-o", str(tmp_path)])
    assert args.func(args) == 0
    assert (tmp_path / "drugdose.jsonl").is_file()
    assert args.func(_parse(["fetch", "drugdose", "-o", str(tmp_path)])) == 0
    assert "up to date" in capsys.readouterr().out
    assert args.func(_parse(["fetch", "seer", "-o", str(tmp_path)])) == 1
    assert args.func(_parse(["fetch", "-o", str(tmp_path)])) == 2
    assert args.func(_parse(["fetch", "nope", "-o", str(tmp_path)])) == 2

    called = {}

    def fake_fetch(names, out_dir, **kw):
        called["names"] = names
        return fetch_mod.FetchResult(fetched=list(names))

    monkeypatch.setattr(fetch_mod, "fetch", fake_fetch)
    assert args.func(_parse(["fetch", "--all", "-o", str(tmp_path)])) == 0
    assert called["names"] == FETCHABLE


def test_example_configs_point_at_fetched_files():
    from meds3.eval.config import EvalConfig

    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "examples" / "configs").rglob("*.yaml")):
        assert "../shared" not in path.read_text(), path
    for dataset in EvalConfig.__dataclass_fields__["datasets"].default_factory():
        assert dataset.startswith("data/eval/") and Path(dataset).stem in SOURCES
