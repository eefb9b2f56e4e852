"""Forest batching vs one tree at a time with one engine call per request (MedS3's way).

Runs the same questions with the same engine and search config twice in one process and
prints tree nodes/s, generated tokens/s and their ratio. With a seeded, batch-independent
engine both runs grow the same trees, which the script checks.

    python benchmarks/bench_mcts.py --model smollm2-135m-instruct --questions 16 --live-trees 16
"""

from __future__ import annotations

import argparse
import json
import time

from meds3.data import load_questions
from meds3.engines import build_engine
from meds3.mcts import Forest, SearchConfig, tree_shapes


class OneCallPerRequest:
    """Wraps an engine so every request is its own ``generate`` call, as the MedS3 code does
    (one small call per expansion or rollout, no batching across trees)."""

    def __init__(self, engine):
        self.engine = engine
        self.tokenizer = engine.tokenizer

    def generate(self, requests):
        return [self.engine.generate([r])[0] for r in requests]


def run(engine, questions, config, live_trees):
    forest = Forest(engine, config, live_trees=live_trees)
    start = time.perf_counter()
    trees = list(forest.run(questions))
    seconds = time.perf_counter() - start
    nodes = sum(len(t.nodes) for t in trees)
    return {"seconds": round(seconds, 2), "trees": len(trees), "nodes": nodes,
            "generated_tokens": forest.stats.generated_tokens, "engine_calls": forest.stats.engine_calls,
            "nodes_per_s": round(nodes / seconds, 3), "tokens_per_s": round(forest.stats.generated_tokens / seconds, 1),
            # keyed by question: the async forest yields trees in the order they finish
            "shapes": tree_shapes(trees, ("parent", "kind", "step", "verdict"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--backend", default="transformers")
    p.add_argument("--seeds", default="seed_data/clinical_calc.jsonl")
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--live-trees", type=int, default=16)
    p.add_argument("--max-nodes", type=int, default=12)
    p.add_argument("--rollout-budget", type=int, default=8)
    p.add_argument("--min-rollouts", type=int, default=4)
    p.add_argument("--step-tokens", type=int, default=48)
    p.add_argument("--finish-tokens", type=int, default=64)
    p.add_argument("--rollout-tokens", type=int, default=64)
    args = p.parse_args()
    config = SearchConfig(max_nodes=args.max_nodes, rollout_budget=args.rollout_budget,
                          min_rollouts=args.min_rollouts, max_step_tokens=args.step_tokens,
                          max_finish_tokens=args.finish_tokens, max_rollout_tokens=args.rollout_tokens)
    questions = list(load_questions(args.seeds))[: args.questions]
    engine = build_engine(args.model, backend=args.backend)
    forest = run(engine, questions, config, args.live_trees)
    per_node = run(OneCallPerRequest(engine), questions, config, 1)
    same = forest.pop("shapes") == per_node.pop("shapes")
    report = {
        "model": args.model, "backend": args.backend, "questions": len(questions), "live_trees": args.live_trees,
        "search": {k: getattr(config, k) for k in ("max_nodes", "rollout_budget", "min_rollouts", "max_step_tokens",
                                                    "max_finish_tokens", "max_rollout_tokens")},
        "forest": forest, "one_tree_per_request_calls": per_node, "same_trees": same,
        "speedup_nodes_per_s": round(forest["nodes_per_s"] / per_node["nodes_per_s"], 2),
        "speedup_tokens_per_s": round(forest["tokens_per_s"] / per_node["tokens_per_s"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
