"""vLLM engine start-up and throughput with the engine core in its own process or in the caller's
(the vllm backend's ``multiprocessing`` option; the CPU default is in the caller's process).

Each arm runs in a fresh Python process, as a Ray actor or a pipeline stage starts one, so the
start-up time includes every import vLLM does. Arms alternate (``--repeats`` rounds); throughput
is the best of its rounds, start-up the median.

Run (CPU, the embedded model)::

    python benchmarks/bench_vllm_start.py --json runs/bench_vllm_start.json

Prints, per arm: seconds from ``import`` to a built engine, and generated tokens/s for a batch
of distinct seeded prompts; then the ratios (own process / this process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

ARMS = {"own process": True, "this process": False}


def one_run(model: str, multiprocessing: bool, batch: int, new_tokens: int) -> dict:
    """Start the engine, time a warm-up-free batch, close it (runs in the child process)."""
    started = time.perf_counter()
    from meds3.engines import GenerationRequest, SamplingParams, build_engine

    engine = build_engine(model, backend="vllm", max_model_len=1024, multiprocessing=multiprocessing)
    start_s = time.perf_counter() - started
    requests = [GenerationRequest(prompt=f"Case {i}: a 45-year-old man with chest pain. Explain step by step.",
                                  params=SamplingParams(temperature=0.7, max_new_tokens=new_tokens, seed=i,
                                                        ignore_eos=True)) for i in range(batch)]
    engine.generate(requests[:2])  # the first steps' one-off costs are start-up, not throughput
    t = time.perf_counter()
    results = engine.generate(requests)
    seconds = time.perf_counter() - t
    tokens = sum(s.num_tokens for r in results for s in r.samples)
    engine.close()
    return {"start_s": start_s, "tokens": tokens, "tokens_per_s": tokens / seconds}


def run_arm(args, multiprocessing: bool) -> dict:
    """``one_run`` in a fresh interpreter; its JSON is the last line it prints."""
    code = (f"import json, sys; sys.path.insert(0, {sys.path[0]!r}); from bench_vllm_start import one_run; "
            f"print(json.dumps(one_run({args.model!r}, {multiprocessing}, {args.batch}, {args.new_tokens})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"arm multiprocessing={multiprocessing} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the report here as JSON")
    args = parser.parse_args(argv)

    runs: dict[str, list[dict]] = {name: [] for name in ARMS}
    for _ in range(args.repeats):
        for name, multiprocessing in ARMS.items():
            runs[name].append(run_arm(args, multiprocessing))
    report = {"model": args.model, "batch": args.batch, "new_tokens": args.new_tokens, "arms": {}}
    for name, got in runs.items():
        report["arms"][name] = {"start_s": statistics.median(r["start_s"] for r in got),
                                "tokens_per_s": max(r["tokens_per_s"] for r in got), "runs": got}
        arm = report["arms"][name]
        print(f"engine core in {name:12s}: start {arm['start_s']:5.1f} s, {arm['tokens_per_s']:6.1f} tokens/s")
    own, here = report["arms"]["own process"], report["arms"]["this process"]
    report["start_ratio"] = own["start_s"] / here["start_s"]
    report["throughput_ratio"] = own["tokens_per_s"] / here["tokens_per_s"]
    print(f"own process / this process: start x{report['start_ratio']:.2f}, "
          f"throughput x{report['throughput_ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
