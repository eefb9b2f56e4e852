"""benchmarks/gpu_check.py: its dry run covers every section, runs without vLLM, Ray or
``datasets``, and its roofline arithmetic gives the hand-computed numbers.

The dry run is the CPU stand-in for the GPU check: tiny shapes, float32, about 10 s on two
cores. Peak memory on CPU is the sampled resident set size (``cpu_rss_sampled``), so it is a
positive number there; no timing is asserted.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
# Runs the script as __main__ with vllm, ray and datasets made unimportable (a None entry in
# sys.modules is what Python and transformers' availability checks treat as "not installed").
WITHOUT_EXTRAS = (
    "import runpy, sys\n"
    "sys.modules.update(dict.fromkeys(['vllm', 'ray', 'datasets']))\n"
    "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return load_gpu_check()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run of the script in a subprocess, as the device machine would run it."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, str(SCRIPT), "--dry-run", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    return report, (out / "gpu_check.md").read_text(), proc.stdout


def test_dry_run_has_every_section(dry_run):
    report, _, _ = dry_run
    assert report["meta"]["dry_run"] is True
    assert report["meta"]["device"] == "cpu"
    assert report["bandwidth"]["status"] == "ok"
    assert report["bandwidth"]["measured_bytes_per_s"] > 0
    assert report["bandwidth"]["spec_bytes_per_s"] is None  # no vendor figure for a CPU
    points = {(r["shape"], r["engine"], r["batch"]): r for r in report["decode"]}
    assert set(points) == {(s, e, b) for s in ("1b", "8b") for e in ("meds3", "hf_generate")
                           for b in (1, 2, 4)}
    for (_, _, batch), r in points.items():
        assert r["status"] == "ok", r
        assert r["generated_tokens"] == batch * r["new_tokens"]  # EOS ignored: every row to the cap
        for key in ("end_to_end_tokens_per_s", "roofline_tokens_per_s"):
            assert r[key] > 0
        assert "decode_tokens_per_s" in r and "roofline_share" in r
        assert r["roofline_share_spec"] is None
    for name, shape in report["shapes"].items():
        assert shape["params_built"] == shape["params"], name  # the analytic count is exact
    train = {r["kind"]: r for r in report["train"]}
    assert set(train) == {"policy", "prm"}
    assert (train["policy"]["lora_r"], train["policy"]["lora_alpha"]) == (16, 32)
    assert (train["prm"]["lora_r"], train["prm"]["lora_alpha"]) == (64, 128)
    for r in train.values():
        assert r["status"] == "ok", r
        assert r["shape"] == "8b" and r["gradient_checkpointing"] is True
        assert r["steps"] == 2 and r["step_s"] > 0
        assert r["peak_memory_kind"] == "cpu_rss_sampled"
        assert r["peak_memory_bytes"] > 0
        assert 0 < r["trainable_params"] < r["weights_bytes"]


def test_markdown_names_every_measurement(dry_run):
    _, table, stdout = dry_run
    assert table in stdout  # the table is printed too
    for word in ("1b", "8b", "meds3", "hf_generate", "| policy |", "| prm |", "% of roofline",
                 "peak memory GiB", "memory bandwidth: measured"):
        assert word in table, word
    decode_rows = [line for line in table.splitlines() if line.startswith(("| 1b |", "| 8b |"))]
    assert len(decode_rows) == 12
    assert {line.split("|")[3].strip() for line in decode_rows} == {"1", "2", "4"}


def test_time_guard_records_everything_as_skipped(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--max-minutes", "0", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["bandwidth"]["status"] == "skipped"
    assert len(report["decode"]) == 12 and len(report["train"]) == 2
    for r in report["decode"] + report["train"]:
        assert r["status"] == "skipped" and r["reason"] == "time budget"
    assert "skipped" in (tmp_path / "gpu_check.md").read_text()


def test_roofline_arithmetic(gpu_check):
    # 10 rows, 1 GB of weights, 1000 B of KV per token, 100 tokens of context, 2 TB/s:
    # a step reads 1e9 + 10 * 100 * 1000 = 1.001e9 bytes and yields 10 tokens
    assert gpu_check.roofline_tokens_per_s(10, 2e12, 1e9, 1000, 100) == pytest.approx(
        10 * 2e12 / 1.001e9)
    assert gpu_check.roofline_tokens_per_s(10, 2e12, 1e9, 1000, 100) == pytest.approx(19980.02,
                                                                                      abs=0.01)
    # batch 1 with no KV: bandwidth / weight bytes
    assert gpu_check.roofline_tokens_per_s(1, 4.8e12, 16e9, 0, 0) == pytest.approx(300.0)


def test_llama_shapes_match_the_published_models(gpu_check):
    eight, one = gpu_check.SHAPES["8b"], gpu_check.SHAPES["1b"]
    assert gpu_check.count_params(eight) == 8_030_261_248  # Llama-3.1-8B
    assert gpu_check.count_params(one) == 1_235_814_400  # Llama-3.2-1B (tied embeddings)
    # bf16 decode reads all but the 128256 x 4096 input embedding; the tied 1B reads it all
    assert gpu_check.weight_bytes_read(eight, 2) == 2 * (8_030_261_248 - 128256 * 4096)
    assert gpu_check.weight_bytes_read(one, 2) == 2 * 1_235_814_400
    # K and V x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert gpu_check.kv_bytes_per_token(eight, 2) == 131_072
    assert gpu_check.kv_bytes_per_token(one, 2) == 2 * 16 * 8 * 64 * 2


def test_spec_bandwidth_names(gpu_check):
    assert gpu_check.spec_bandwidth("NVIDIA H200") == 4.8e12
    assert gpu_check.spec_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert gpu_check.spec_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert gpu_check.spec_bandwidth("NVIDIA GH200 480GB") is None
    assert gpu_check.spec_bandwidth("Some Future GPU") is None
