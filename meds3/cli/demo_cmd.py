"""``meds3 demo``: the main job at this stage of the project.

Generates the clinical-calculation seeds, reads them back through the loaders, renders
the MedS3 prompt of a few, and checks the verifier on three answers per question: the
worked solution (must be correct), a wrong value (incorrect) and a cut-off solution with
no final answer (unverifiable). Later stages grow this into the self-evolution loop.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from meds3.data import MedQuestion, load_questions
from meds3.data.prompts import render_prompt
from meds3.data.seeds import SeedGenConfig, write_seeds

EXPECTED = {"solution": True, "wrong": False, "no_answer": None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate seeds, render prompts and verify a few answers")
    p.add_argument("-o", "--output-dir", default="runs/demo", help="where to write seeds.jsonl (default runs/demo)")
    p.add_argument("--n", type=int, default=500, help="seed questions to generate (default 500)")
    p.add_argument("--show", type=int, default=8, help="questions to verify and print (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run_demo)


def answer_variants(q: MedQuestion) -> dict[str, str]:
    """Three model-like outputs for a generated question: its worked solution, the same
    solution ending in a wrong value, and the solution cut off before its answer."""
    solution = q.metadata["solution"]
    head, _, _ = solution.rpartition("The answer is")
    gold = float(q.answer)
    wrong = gold * 1.5 + 7  # far outside any tolerance
    unit = q.metadata.get("unit", "")
    return {"solution": solution,
            "wrong": f"{head}The answer is {wrong:.2f} {unit}.",
            "no_answer": head.rstrip() or "Step 1: I need more information."}


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit 1 if any verdict differs from the expected one."""
    from meds3.verify import verify

    out = Path(args.output_dir)
    path = write_seeds(SeedGenConfig(n=args.n, seed=args.seed, output=str(out / "seeds.jsonl")))
    questions = load_questions(path)
    by_calc = Counter(q.metadata["calculator"] for q in questions)
    print(f"generated {len(questions)} questions -> {path}")
    print("  calculators: " + ", ".join(f"{k} {v}" for k, v in sorted(by_calc.items())))
    sample = random.Random(args.seed).sample(list(questions), min(args.show, len(questions)))
    print("\nprompt of the first sampled question:\n" + "-" * 72)
    print(render_prompt(sample[0]))
    print("-" * 72)
    label = {True: "correct", False: "incorrect", None: "unverifiable"}
    header = f"{'id':<36} {'level':<7} {'gold':>10}  " + "  ".join(f"{k:<13}" for k in EXPECTED)
    print("\n" + header + "\n" + "-" * len(header))
    mismatches = 0
    for q in sample:
        cells = []
        for kind, text in answer_variants(q).items():
            verdict = verify(text, q)
            ok = verdict.correct is EXPECTED[kind]
            mismatches += not ok
            cells.append(f"{label[verdict.correct] + ('' if ok else '!'):<13}")
        print(f"{q.id:<36} {q.metadata.get('level', ''):<7} {q.answer:>10}  " + "  ".join(cells))
    print(f"\n{len(sample) * 3 - mismatches}/{len(sample) * 3} verdicts as expected")
    return 1 if mismatches else 0
