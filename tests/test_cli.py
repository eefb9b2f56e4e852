"""The meds3 command: exit codes, outputs written, errors as one clear line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meds3.cli import main
from meds3.data import load_questions


def test_data_check_reports_counts_and_bad_records(fixtures, tmp_path, capsys):
    good = fixtures / "formats" / "medqa_us_test.jsonl"
    assert main(["data", "check", str(good)]) == 0
    assert "2 questions (medqa; multiple_choice 2)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + "{oops\n")
    assert main(["data", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "line 3: invalid JSON" in out
    assert main(["data", "check", "--strict", str(bad)]) == 1
    assert out.count("FAIL") == 0 and "FAIL" in capsys.readouterr().out


def test_seeds_generate_is_reproducible_and_loads(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["seeds", "generate", "--n", "40", "--seed", "7", "-o", str(a)]) == 0
    assert main(["seeds", "generate", "--n", "40", "--seed", "7", "-o", str(b), "levels=[easy, hard]"]) == 0
    assert "wrote 40 questions" in capsys.readouterr().out
    qs = load_questions(a)
    assert len(qs) == 40 and {q.task_type for q in qs} == {"numeric"}
    assert {q.metadata["level"] for q in load_questions(b)} <= {"easy", "hard"}
    assert main(["seeds", "generate", "--n", "40", "--seed", "7", "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_seeds_generate_rejects_bad_config(tmp_path, capsys):
    assert main(["seeds", "generate", "-o", str(tmp_path / "x.jsonl"), "levels=[extreme]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meds3: error: ") and "levels must be a non-empty subset" in err
    assert main(["seeds", "generate", "-o", str(tmp_path / "x.jsonl"), "nn=3"]) == 2
    assert "unknown key 'nn' for SeedGenConfig" in capsys.readouterr().err


def test_seeds_build_from_manifest(fixtures, tmp_path, capsys):
    manifest = tmp_path / "mix.yaml"
    src = fixtures / "formats"
    manifest.write_text(f"seed: 1\nsources:\n  - {{path: {src / 'ori_pqal.json'}, n: 1}}\n"
                        f"  - {{path: {src / 'anatomy_test.csv'}}}\n")
    out = tmp_path / "mix.jsonl"
    assert main(["seeds", "build", str(manifest), "-o", str(out)]) == 0
    qs = load_questions(out)
    assert len(qs) == 3 and sum(q.source == "PubMedQA" for q in qs) == 1


def test_verify_command(fixtures, capsys):
    path = str(fixtures / "formats" / "medqa_us_test.jsonl")
    text = "Step 1: UTI in pregnancy.\n\nThe answer is (D)."
    assert main(["verify", path, "--id", "medqa_us_test_0", "--text", text]) == 0
    assert capsys.readouterr().out.startswith("correct: extracted='D'")
    assert main(["verify", path, "--id", "medqa_us_test_0", "--text", "The answer is A."]) == 1
    assert main(["verify", path, "--id", "medqa_us_test_0", "--text", "I am not sure."]) == 3
    assert main(["verify", path, "--id", "nope", "--text", "x"]) == 2


def test_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "none.jsonl"), "--id", "x", "--text", "t"]) == 2
    assert capsys.readouterr().err.strip() == f"meds3: error: {tmp_path / 'none.jsonl'}: file does not exist"


def test_demo_main_job(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--n", "60", "--show", "12"]) == 0
    out = capsys.readouterr().out
    assert "36/36 verdicts as expected" in out
    assert "Step 0: Let's break down this problem step by step." in out
    assert len(load_questions(tmp_path / "seeds.jsonl")) == 60


def test_console_entry_point_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "meds3", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("meds3 ")


def test_committed_seed_file_matches_generator():
    from pathlib import Path

    from meds3.data.seeds import SeedGenConfig, generate_seeds

    committed = Path(__file__).resolve().parents[1] / "seed_data" / "clinical_calc.jsonl"
    lines = committed.read_text(encoding="utf-8").splitlines()
    fresh = [json.dumps(q.to_dict(), ensure_ascii=False) for q in generate_seeds(SeedGenConfig(n=500, seed=0))]
    assert lines == fresh


def test_committed_multiple_choice_seed_file_matches_generator():
    from pathlib import Path

    from meds3.data.seeds import SeedGenConfig, generate_seeds

    committed = Path(__file__).resolve().parents[1] / "seed_data" / "clinical_calc_mc.jsonl"
    lines = committed.read_text(encoding="utf-8").splitlines()
    fresh = generate_seeds(SeedGenConfig(n=500, seed=0, choices=4))
    assert lines == [json.dumps(q.to_dict(), ensure_ascii=False) for q in fresh]


def test_tree_show_prints_values_visits_verdicts(tmp_path, capsys):
    from scripted_engine import ScriptedEngine

    from meds3.mcts import Forest, SearchConfig
    from meds3.rollout import TreeStore

    qs = load_questions(Path(__file__).resolve().parent / "fixtures" / "formats" / "medqa_us_test.jsonl")
    store = TreeStore(tmp_path / "trees", flush_every=1)
    store.add_many(Forest(ScriptedEngine(right="D"), SearchConfig(max_nodes=8), live_trees=2).run(qs))
    assert main(["tree", "show", str(tmp_path), "--id", "medqa_us_test_0", "--width", "30"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()
    assert first[0].startswith("medqa_us_test_0 [complete: ") and "gold D" in first[0]
    assert "└─ #0 root  V=" in out and "├─ #1 reason  V=" in out and "R=" in out
    assert "correct [D]" in out or "wrong [" in out
    shard = store.shards()[0]
    assert main(["tree", "show", str(shard)]) == 0
    assert main(["tree", "show", str(tmp_path), "--id", "nope"]) == 2


@pytest.mark.slow
def test_rollout_command_on_tiny_model(tmp_path, capsys):
    seeds = Path(__file__).resolve().parents[1] / "seed_data" / "clinical_calc.jsonl"
    args = ["rollout", "--no-progress", f"seeds=[{seeds}]", "limit=2", f"output_dir={tmp_path}",
            "model=tiny-random-llama", "live_trees=2", "search.max_nodes=4", "search.rollout_budget=2",
            "search.min_rollouts=2", "search.max_step_tokens=16", "search.max_finish_tokens=16",
            "search.max_rollout_tokens=16"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trees"] == 2 and summary["complete"] == 2
    assert main(args) == 0  # resume: nothing left to do
    assert json.loads(capsys.readouterr().out)["trees"] == 2
