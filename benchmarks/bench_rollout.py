"""The same rollout job through the local runner and through Ray, with the same total threads.

Runs, in one process: the local runner (one engine with ``--threads`` torch threads) and the
Ray runner on a fresh local Ray instance (``--threads`` actors x 1 thread, one engine each),
on the same questions and search config, ``--repeats`` times each (best kept: the machine
may be shared). Prints both throughputs, their ratio (Ray / local; target >= 0.9), whether the
two runs grew the same trees, and a projection of trees/hour on a cluster of N workers from
the measured per-worker figures, with its arithmetic.

    python benchmarks/bench_rollout.py --model tiny-random-llama --questions 16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from meds3.engines import build_engine
from meds3.mcts import SearchConfig, tree_shapes
from meds3.rollout import RayConfig, RolloutConfig, TreeStore, run_ray_rollout, run_rollout


def shapes(out: Path) -> dict:
    return tree_shapes(TreeStore(out / "trees").iter_trees(), ("parent", "kind", "verdict"))


def job(args, out: Path, ray: bool) -> RolloutConfig:
    search = SearchConfig(max_nodes=args.max_nodes, rollout_budget=args.rollout_budget, min_rollouts=args.min_rollouts,
                          max_step_tokens=args.step_tokens, max_finish_tokens=args.finish_tokens,
                          max_rollout_tokens=args.rollout_tokens)
    return RolloutConfig(seeds=[args.seeds], limit=args.questions, output_dir=str(out), model=args.model,
                         backend=args.backend, live_trees=args.live_trees, flush_every=args.unit_size, search=search,
                         ray=RayConfig(enabled=ray, num_workers=args.threads, num_cpus_per_worker=1, torch_threads=1,
                                       unit_size=args.unit_size))


def run_local(args, out: Path) -> dict:
    """Engine load + search, timed together (the Ray arm's actors load theirs too)."""
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    engine = build_engine(args.model, backend=args.backend)
    loaded = time.perf_counter()
    summary = run_rollout(job(args, out, ray=False), engine=engine, progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "engine_load_s": round(loaded - start, 2), "trees": summary["trees"],
            "tokens": round(summary["tokens_per_tree"] * summary["trees"]),
            "trees_per_s": round(summary["trees"] / seconds, 4)}


def run_ray(args, out: Path) -> dict:
    """Actor start + engine loads + search (the Ray instance itself is started before the clock)."""
    start = time.perf_counter()
    summary = run_ray_rollout(job(args, out, ray=True), progress=False)
    seconds = time.perf_counter() - start
    r = summary["ray"]
    busy = [w["busy_s"] for w in r["per_worker"]]
    return {"seconds": round(seconds, 2), "trees": summary["trees"],
            "tokens": round(summary["tokens_per_tree"] * summary["trees"]),
            "trees_per_s": round(summary["trees"] / seconds, 4),
            "per_worker": [{k: w[k] for k in ("worker", "trees", "busy_s", "trees_per_s", "tokens_per_s",
                                              "utilization")}
                           for w in r["per_worker"]],
            "job_utilization": round(sum(busy) / (len(busy) * seconds), 3),
            "steady_utilization": round(min(w["utilization"] for w in r["per_worker"] if w["trees"]), 3),
            "driver_store_s": r["driver_store_s"]}


def projection(ray_run: dict, args) -> dict:
    """Trees/hour on N workers: N x per-worker trees/s x 3600 x steady utilization (busy share once
    an actor has its engine; start-up is paid once per job), capped by the driver's store writes."""
    busy = [w for w in ray_run["per_worker"] if w["trees"]]
    measured = sum(w["trees_per_s"] for w in busy) / len(busy)
    rate = args.worker_trees_per_s or measured
    u = ray_run["steady_utilization"]
    driver_cap = 3600 * ray_run["trees"] / max(ray_run["driver_store_s"], 1e-6)
    rows = []
    for n in args.cluster_workers:
        workers = n * rate * 3600 * u
        rows.append({"workers": n, "trees_per_hour": round(min(workers, driver_cap)),
                     "arithmetic": f"min({n} x {rate:.4f} x 3600 x {u:.3f} = {workers:,.0f}, "
                                   f"driver {driver_cap:,.0f})"})
    return {"per_worker_trees_per_s": round(rate, 4),
            "source": "--worker-trees-per-s" if args.worker_trees_per_s else "measured here (CPU actor, 1 thread)",
            "utilization": u, "driver_trees_per_hour": round(driver_cap), "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-random-llama")
    p.add_argument("--backend", default="transformers")
    p.add_argument("--seeds", default="seed_data/clinical_calc.jsonl")
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="local: torch threads; Ray: actors x 1 thread")
    p.add_argument("--live-trees", type=int, default=4)
    p.add_argument("--unit-size", type=int, default=4)
    p.add_argument("--max-nodes", type=int, default=6)
    p.add_argument("--rollout-budget", type=int, default=4)
    p.add_argument("--min-rollouts", type=int, default=2)
    p.add_argument("--step-tokens", type=int, default=24)
    p.add_argument("--finish-tokens", type=int, default=32)
    p.add_argument("--rollout-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1, help="runs of each arm; the best is kept")
    p.add_argument("--cluster-workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    p.add_argument("--worker-trees-per-s", type=float, default=None,
                   help="per-worker rate for the projection (e.g. measured on one GPU node); default: measured here")
    args = p.parse_args()
    import ray

    ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_rollout_"))
    local_runs, ray_runs = [], []
    try:
        for i in range(args.repeats):
            local_runs.append(run_local(args, tmp / f"local{i}"))
            ray_runs.append(run_ray(args, tmp / f"ray{i}"))
        same = shapes(tmp / "local0") == shapes(tmp / "ray0")
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    local = max(local_runs, key=lambda r: r["trees_per_s"])
    best = max(ray_runs, key=lambda r: r["trees_per_s"])
    report = {
        "model": args.model, "questions": args.questions, "threads": args.threads, "live_trees": args.live_trees,
        "unit_size": args.unit_size, "repeats": args.repeats,
        "local": local, "ray": best, "same_trees": same,
        "ratio_trees_per_s": round(best["trees_per_s"] / local["trees_per_s"], 3),
        "all_runs_trees_per_s": {"local": [r["trees_per_s"] for r in local_runs],
                                 "ray": [r["trees_per_s"] for r in ray_runs]},
        "projection": projection(best, args),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
