"""Seed mixes from a manifest: reproducible draws, counts, clear errors."""

import json

import pytest

from meds3.config import ConfigError
from meds3.data import DataError
from meds3.data.mix import MixManifest, MixSource, build_mix


def write(tmp_path, name, n, prefix):
    p = tmp_path / name
    p.write_text("".join(json.dumps({"id": f"{prefix}{i}", "question": f"q{i}", "options": {"A": "x", "B": "y"},
                                     "answer": "A"}) + "\n" for i in range(n)))
    return p


def test_manifest_draws_requested_counts_reproducibly(tmp_path):
    write(tmp_path, "a.jsonl", 10, "a")
    write(tmp_path, "b.jsonl", 5, "b")
    (tmp_path / "mix.yaml").write_text("seed: 3\nsources:\n  - {path: a.jsonl, n: 4}\n  - {path: b.jsonl}\n")
    first = build_mix(tmp_path / "mix.yaml")
    assert len(first) == 9
    assert sum(q.id.startswith("a") for q in first) == 4 and sum(q.id.startswith("b") for q in first) == 5
    assert [q.id for q in build_mix(tmp_path / "mix.yaml")] == [q.id for q in first]


def test_adding_a_source_keeps_other_draws(tmp_path):
    write(tmp_path, "a.jsonl", 20, "a")
    write(tmp_path, "b.jsonl", 5, "b")
    one = build_mix(MixManifest([MixSource("a.jsonl", 5)], seed=1, shuffle=False), tmp_path)
    two = build_mix(MixManifest([MixSource("a.jsonl", 5), MixSource("b.jsonl", 2)], seed=1, shuffle=False),
                    tmp_path)
    assert [q.id for q in two[:5]] == [q.id for q in one]


def test_too_many_requested(tmp_path):
    write(tmp_path, "a.jsonl", 3, "a")
    with pytest.raises(DataError, match="asks for 4 questions but the file has 3 valid ones"):
        build_mix(MixManifest([MixSource("a.jsonl", 4)]), tmp_path)


def test_id_collision_names_both_files(tmp_path):
    write(tmp_path, "a.jsonl", 3, "x")
    write(tmp_path, "b.jsonl", 3, "x")
    with pytest.raises(DataError, match=r"id 'x\d' is also in .*a.jsonl"):
        build_mix(MixManifest([MixSource("a.jsonl"), MixSource("b.jsonl")]), tmp_path)


def test_bad_manifest(tmp_path):
    (tmp_path / "m.yaml").write_text("sources:\n  - {path: a.jsonl, count: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sources\[0\].count' for MixSource"):
        build_mix(tmp_path / "m.yaml")
    (tmp_path / "m.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="sources must list at least one file"):
        build_mix(tmp_path / "m.yaml")


def test_skip_source_with_bad_records(tmp_path):
    p = write(tmp_path, "a.jsonl", 3, "a")
    p.write_text(p.read_text() + "{broken\n")
    qs = build_mix(MixManifest([MixSource("a.jsonl", on_error="skip")]), tmp_path)
    assert len(qs) == 3
