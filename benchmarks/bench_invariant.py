"""What batch-invariant generation costs and what it buys, measured in one run.

For the default transformers engine and the one with ``batch_invariant=True`` (same model,
same requests): generated tokens/s on a mixed batch (seeded requests of different lengths and
sample counts), and how many seeded target requests came out different in a mixed batch than
alone (the guarantee the mode gives).

Run (the embedded model, CPU)::

    python benchmarks/bench_invariant.py --model smollm2-135m-instruct --mixes 3 --json runs/bench_invariant.json
"""

from __future__ import annotations

import argparse
import json
import random
import time


def measure(model: str, invariant: bool, mixes: int, seed: int) -> dict:
    from meds3.engines import build_engine
    from meds3.engines.types import GenerationRequest, SamplingParams

    engine = build_engine(model, backend="transformers", batch_invariant=invariant)

    def request(text: str, n: int, tokens: int, request_seed: int) -> GenerationRequest:
        return GenerationRequest(prompt=engine.chat_prompt([{"role": "user", "content": text}]), n=n,
                                 params=SamplingParams(temperature=1.0, max_new_tokens=tokens, seed=request_seed))

    targets = [request(f"Patient {i}: fever and cough for {i} days. Diagnosis?", 3, 40, 100 + i) for i in range(3)]
    alone = [[s.token_ids for s in engine.generate([t])[0].samples] for t in targets]
    rng = random.Random(seed)
    changed = tokens = 0
    seconds = 0.0
    for _ in range(mixes):
        others = [request("word " * rng.randint(1, 60) + "?", rng.randint(1, 4), rng.randint(8, 48), rng.randint(0, 99))
                  for _ in range(rng.randint(6, 12))]
        mix = others + targets
        rng.shuffle(mix)
        start = time.perf_counter()
        results = engine.generate(mix)
        seconds += time.perf_counter() - start
        tokens += sum(len(s.token_ids) for r in results for s in r.samples)
        changed += sum([s.token_ids for s in results[mix.index(t)].samples] != a for t, a in zip(targets, alone))
    engine.close()
    return {"batch_invariant": invariant, "tokens_per_s": round(tokens / seconds, 1), "generated_tokens": tokens,
            "seconds": round(seconds, 2), "targets_changed": changed, "targets": len(targets) * mixes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--mixes", type=int, default=3, help="mixed batches per engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = [measure(args.model, invariant, args.mixes, args.seed) for invariant in (False, True)]
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    print("| engine | tokens/s | seeded targets changed by their batch |")
    print("|---|---|---|")
    for r in rows:
        name = "batch_invariant" if r["batch_invariant"] else "default"
        print(f"| {name} | {r['tokens_per_s']} | {r['targets_changed']} of {r['targets']} |")
    print(f"invariant / default tokens/s: {ratio:.2f}")
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "runs": rows, "ratio": round(ratio, 3)}, indent=2))


if __name__ == "__main__":
    main()
