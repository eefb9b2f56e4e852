"""How busy the search keeps the engine: the forest's generated tokens/s divided by the engine's
own tokens/s at the same concurrency, measured in the same run, and the share of prompt tokens
served from the prefix cache.

1. The search: the README main job's rollout config (``examples/configs/evolve.yaml``'s
   ``rollout`` section) over ``--questions`` seed questions with its ``live_trees``; the engine
   is wrapped to count the sequences of every call.
2. The capacity: one ``generate`` call decoding as many sequences as the search's calls carried
   on average, for the search's mean new tokens per sequence, run to the end (``ignore_eos``):
   one prompt of the search's mean prompt length sampled that many times, since the search's
   own prompts come mostly from the prefix cache.

Utilization = (1) / (2). Below 1, the engine waited: rounds end with the slowest request, and
batches shrink to the stragglers (issue 16 targets >= 0.8).

    python benchmarks/bench_utilization.py --questions 4 --json runs/bench_utilization.json

Both forest schedules run on the same engine in one run (``--schedules rounds async``): the
async forest's tokens/s over the round schedule's is printed, and whether the trees are the
same (they are bit for bit with ``--batch-invariant``; otherwise a batch can change a rounding).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


class Counting:
    """Wraps an engine and counts what the search asks of it, through ``generate`` (the rounds
    schedule) or the stream (``submit``/``poll``, the async schedule). ``calls`` counts generate
    calls and polls; ``in_flight`` sums the sequences inside the engine at each of them."""

    def __init__(self, engine):
        self.engine, self.tokenizer = engine, engine.tokenizer
        self.calls = self.sequences = self.prompt_tokens = self.new_tokens = self.in_flight = 0
        self._waiting: dict[int, int] = {}  # ticket -> sequences

    def _count_requests(self, requests):
        self.sequences += sum(r.n for r in requests)

    def _count_results(self, results):
        # Prompt lengths come from the results (the engine tokenized them already), so counting
        # adds no tokenizer work to the timed search.
        self.prompt_tokens += sum(res.prompt_tokens * len(res.samples) for res in results)
        self.new_tokens += sum(len(s.token_ids) for res in results for s in res.samples)

    def generate(self, requests):
        results = self.engine.generate(requests)
        self.calls += 1
        self.in_flight += sum(r.n for r in requests)
        self._count_requests(requests)
        self._count_results(results)
        return results

    def submit(self, requests):
        tickets = self.engine.submit(requests)
        self._count_requests(requests)
        self._waiting.update((t, r.n) for t, r in zip(tickets, requests))
        return tickets

    def poll(self):
        self.calls += 1
        self.in_flight += sum(self._waiting.values())
        done = self.engine.poll()
        for t, _ in done:
            self._waiting.pop(t, None)
        self._count_results([r for _, r in done])
        return done

    def __getattr__(self, name):
        return getattr(self.engine, name)


def capacity(engine, sequences: int, prompt_tokens: int, new_tokens: int) -> float:
    """Generated tokens/s of one call decoding ``sequences`` rows to ``new_tokens`` each: one
    prompt of the search's mean length sampled ``sequences`` times, so its single prefill costs
    about what the search's mostly cached prompts cost (decode capacity at that concurrency)."""
    from meds3.engines.types import GenerationRequest, SamplingParams

    text = "Case. " + "finding " * max(1, prompt_tokens // 2)
    request = GenerationRequest(prompt=engine.chat_prompt([{"role": "user", "content": text}]), n=sequences,
                                params=SamplingParams(temperature=1.0, max_new_tokens=new_tokens, seed=0,
                                                      ignore_eos=True))
    start = time.perf_counter()
    results = engine.generate([request])
    return sum(len(s.token_ids) for r in results for s in r.samples) / (time.perf_counter() - start)


def measure(engine, backend: str, questions: int, schedule: str) -> dict:
    from meds3.config import load_config
    from meds3.data import load_questions
    from meds3.evolve import EvolveConfig
    from meds3.mcts import tree_shapes
    from meds3.rollout.runner import build_forest

    config = load_config(EvolveConfig, "examples/configs/evolve.yaml", [])
    rollout = config.rollout
    qs = load_questions(config.seeds[0])[:questions]
    counting = Counting(engine)
    sched = getattr(engine, "_sched", None)  # transformers: count the KV copies of this arm
    before = dict(sched.kv.copies) if sched is not None else None
    forest = build_forest(rollout, counting)
    forest.schedule = schedule
    start = time.perf_counter()
    trees = list(forest.run(qs))
    seconds = time.perf_counter() - start
    s = forest.stats
    search_tok_s = s.generated_tokens / seconds
    concurrency = max(1, round(counting.in_flight / max(counting.calls, 1)))
    mean_prompt = counting.prompt_tokens // max(counting.sequences, 1)
    mean_new = max(1, counting.new_tokens // max(counting.sequences, 1))
    engine_tok_s = capacity(engine, concurrency, mean_prompt, mean_new)
    computed, cached = s.prompt_tokens_computed, s.prompt_tokens_cached
    shapes = tree_shapes(trees, ("parent", "kind", "step"))
    return {"backend": backend, "schedule": schedule, "trees": len(trees), "nodes": sum(len(t.nodes) for t in trees),
            "seconds": round(seconds, 1), "engine_calls": counting.calls, "sequences_in_flight": concurrency,
            "mean_prompt_tokens": mean_prompt, "mean_new_tokens": mean_new,
            "generated_tokens": s.generated_tokens, "search_tokens_per_s": round(search_tok_s, 1),
            "engine_tokens_per_s": round(engine_tok_s, 1), "utilization": round(search_tok_s / engine_tok_s, 3),
            "prompt_tokens_cached_share": round(cached / max(cached + computed, 1), 3) if computed + cached else None,
            "kv_copies": ({k: v - before[k] for k, v in sched.kv.copies.items()} if sched is not None else None),
            "_shapes": shapes}


def main() -> None:
    from meds3.engines import build_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--backends", nargs="+", default=["transformers"], choices=["transformers", "vllm"])
    parser.add_argument("--schedules", nargs="+", default=["rounds", "async"], choices=["rounds", "async"])
    parser.add_argument("--batch-invariant", action="store_true",
                        help="transformers: batch-invariant generation (then both schedules grow identical trees)")
    parser.add_argument("--admit-wait", type=int, default=None,
                        help="transformers: engine admit_wait (decode steps queued prompts may wait)")
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        options = {"enforce_eager": True} if backend == "vllm" else {"batch_invariant": args.batch_invariant}
        if backend == "transformers" and args.admit_wait is not None:
            options["admit_wait"] = args.admit_wait
        engine = build_engine(args.model, backend=backend, **options)
        arms = [measure(engine, backend, args.questions, schedule) for schedule in args.schedules]
        engine.close()
        first = arms[0]["_shapes"]
        for arm in arms:
            arm["same_trees_as_first_arm"] = arm.pop("_shapes") == first
        rows += arms
    base = {r["backend"]: r for r in rows if r["schedule"] == args.schedules[0]}
    for r in rows:
        r["tokens_per_s_vs_first_arm"] = round(r["search_tokens_per_s"] / base[r["backend"]]["search_tokens_per_s"], 2)
    keys = ["backend", "schedule", "trees", "nodes", "seconds", "engine_calls", "sequences_in_flight",
            "mean_new_tokens", "search_tokens_per_s", "engine_tokens_per_s", "utilization",
            "prompt_tokens_cached_share", "tokens_per_s_vs_first_arm", "same_trees_as_first_arm", "kv_copies"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
