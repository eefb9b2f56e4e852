"""Faults: torn evaluation files and interrupted writes (issue 15, item 4).

An unterminated last line of a response file is dropped (with a warning) and its question
generated again, once; a malformed line in the middle stays a DataError naming file:line. Small
files go through one atomic writer (``meds3.io``): a failed write leaves the old file, a
symlink at the target is replaced and never written through, temporary names carry the pid.
"""

from __future__ import annotations

import json
import logging
import os
import re

import pytest
from test_eval import TableEngine, write_bench

import meds3.io
from meds3.config import save_config
from meds3.data.errors import DataError
from meds3.eval import EvalConfig, read_responses, run_eval
from meds3.eval.report import write_tables
from meds3.eval.runner import write_responses
from meds3.io import atomic_write_json, atomic_write_text, hostname


@pytest.fixture
def bench(tmp_path):
    return write_bench(tmp_path / "mini.jsonl")


def eval_config(bench, tmp_path):
    return EvalConfig(datasets=[str(bench)], n=4, selectors=["majority"], output_dir=str(tmp_path / "out"))


def test_torn_last_line_is_dropped_and_its_question_generated_once(bench, tmp_path, caplog):
    cfg = eval_config(bench, tmp_path)
    first = run_eval(cfg, engine=TableEngine(), progress=False)
    path = tmp_path / "out" / "responses" / "mini.n4.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4 and json.loads(lines[-1])["question_id"] == "q4"
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed mid-append

    engine = TableEngine()
    with caplog.at_level(logging.WARNING):
        again = run_eval(cfg, engine=engine, progress=False)
    assert engine.questions_seen == ["q4"]  # only the torn question, only the sampled run
    assert re.search(r"mini\.n4\.jsonl:4: dropped an unterminated last line", caplog.text)
    assert again["results"] == first["results"]
    ids = [json.loads(line)["question_id"] for line in path.read_text().splitlines()]  # every line parses
    assert sorted(ids) == ["q1", "q2", "q3", "q4"]  # each question exactly once

    engine = TableEngine()
    run_eval(cfg, engine=engine, progress=False)
    assert engine.questions_seen == []  # regenerated once, not again


def test_reader_skips_a_tail_torn_inside_a_character(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"question_id": "q1", "responses": []}\n{"question_id": "\xc3')  # half of a UTF-8 "e-acute"
    with caplog.at_level(logging.WARNING):
        assert read_responses(path) == {"q1": []}
    assert "r.jsonl:2: unterminated last line ignored" in caplog.text


def test_malformed_middle_line_is_a_data_error_naming_file_and_line(bench, tmp_path):
    cfg = eval_config(bench, tmp_path)
    run_eval(cfg, engine=TableEngine(), progress=False)
    path = tmp_path / "out" / "responses" / "mini.n4.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"  # a terminated but broken line: not a torn append
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"mini\.n4\.jsonl:2: bad response record"):
        run_eval(cfg, engine=TableEngine(), progress=False)
    assert path.read_text() == "".join(lines)  # left for the operator to see


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    good = {"results": [{"dataset": "d", "budget": None, "selector": "greedy", "n": 1, "questions": 1,
                         "accuracy": 1.0, "ci_low": 1.0, "ci_high": 1.0, "correct": 1, "answered": 1.0,
                         "tokens_per_question": 5.0}], "accuracy_vs_n": []}
    write_tables(tmp_path, good)
    before = {name: (tmp_path / name).read_text() for name in ("results.json", "results.csv", "results.md")}
    bad = {**good, "results": [{**good["results"][0], "accuracy": 0.0}, {"not_a_column": 1}]}
    with pytest.raises(ValueError):
        write_tables(tmp_path, bad)  # the CSV writer fails after the header and a new first row
    assert (tmp_path / "results.csv").read_text() == before["results.csv"]  # each file is old or new, never half
    before = {name: (tmp_path / name).read_text() for name in before}

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(meds3.io.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(tmp_path / "results.json", {"new": True})
    with pytest.raises(OSError, match="No space"):
        save_config(EvalConfig(), tmp_path / "results.md")
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json", "results.md"]  # no temp


def test_symlink_at_the_target_is_replaced_never_followed(tmp_path):
    victim = tmp_path / "victim.yaml"
    victim.write_text("precious: true\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").symlink_to(victim)
    (out / "summary.json").symlink_to(victim)
    save_config(EvalConfig(), out / "config.yaml")
    atomic_write_json(out / "summary.json", {"trees": 1})
    assert victim.read_text() == "precious: true\n"
    assert not (out / "config.yaml").is_symlink() and "datasets:" in (out / "config.yaml").read_text()
    assert json.loads((out / "summary.json").read_text()) == {"trees": 1}


def test_temporary_names_carry_pid_and_host(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(meds3.io.os, "replace", spy)
    (tmp_path / "responses").mkdir()
    write_responses(tmp_path / "responses" / "d.n4.jsonl", {"q1": []})  # the rewrite two evals used to share
    atomic_write_text(tmp_path / "generation.json", "{}")
    [(tmp1, dst1), (tmp2, dst2)] = seen
    assert (dst1, dst2) == ("d.n4.jsonl", "generation.json")
    for tmp, dst in seen:
        assert re.fullmatch(rf"\.{re.escape(dst)}\.{os.getpid()}@{re.escape(hostname())}\.[0-9a-f]{{8}}\.tmp", tmp)
