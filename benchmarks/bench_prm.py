"""PRM scoring: every step of a trajectory in one forward pass vs one pass per prefix.

Scores the same 8-step trajectories twice in one process with one ``PRMScorer``: the single
pass (``score``: labels read at each step's last token) and the per-prefix way
(``score_by_prefixes``: each step's prefix re-encoded, as PRMs that score step by step do).
Prints steps scored per second for both, their ratio, and the largest score difference
(the two must agree). Without ``--prm`` it builds an untrained PRM of the paper's shape
(LoRA r=64 on every linear layer plus the score head), which costs the same to run.

    python benchmarks/bench_prm.py --model smollm2-135m-instruct --questions 8 --trajectories 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from meds3.data import load_questions
from meds3.data.prompts import ROOT_STEP
from meds3.train import PRMScorer, PRMTrainConfig
from meds3.train.common import load_tokenizer, lora_config, write_meta
from meds3.train.labels import tokenize_trajectory

STEP_TEMPLATES = [
    "The key findings in the question are the patient's history, vital signs and laboratory values.",
    "We need to identify which option is most consistent with these findings and the likely mechanism.",
    "First consider the most common cause in a patient of this age and presentation, then the alternatives.",
    "Option {a} would explain the acute onset, but it does not account for the laboratory abnormalities.",
    "Option {b} fits the time course and the pattern of the laboratory results described above.",
    "The remaining options are less likely because they would produce different physical examination signs.",
    "Putting the history, examination and tests together, the single best explanation is option {b}.",
    "The answer is {b}.",
]


def make_trajectories(n: int, k: int) -> list[list[str]]:
    """``n`` trajectories of Step 0 plus 7 reasoning steps (8 steps), differing in letters."""
    letters = "ABCD"
    out = []
    for i in range(n):
        a, b = letters[i % 4], letters[(i + 1 + k) % 4]
        out.append([ROOT_STEP] + [t.format(a=a, b=b) for t in STEP_TEMPLATES[1:]])
    return out


def build_untrained_prm(model: str, out: Path) -> Path:
    """A PRM output folder with a freshly initialised adapter (same compute as a trained one)."""
    import torch
    from peft import get_peft_model

    from meds3.engines.models import resolve_model
    from meds3.train.scorer import load_prm_base

    config = PRMTrainConfig(base_model=model, output_dir=str(out))
    base = resolve_model(model)
    tok = load_tokenizer(base)
    torch.manual_seed(0)
    peft_model = get_peft_model(load_prm_base(base, tok), lora_config(config, "TOKEN_CLS"))
    peft_model.save_pretrained(str(out / "adapter"))
    tok.save_pretrained(str(out / "adapter"))
    write_meta(out / "adapter", "prm", config, probability="sigmoid")
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="base model (ignored with --prm)")
    p.add_argument("--prm", help="a trained PRM output folder (default: an untrained one of the paper's shape)")
    p.add_argument("--questions-file", default="../shared/data/eval/medqa_4opt_test.jsonl",
                   help="questions (falls back to seed_data/clinical_calc.jsonl when missing)")
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--trajectories", type=int, default=4, help="8-step trajectories per question")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()

    qfile = args.questions_file if Path(args.questions_file).exists() else "seed_data/clinical_calc.jsonl"
    questions = load_questions(qfile)[: args.questions]
    items = [(q, make_trajectories(args.trajectories, k)) for k, q in enumerate(questions)]
    with tempfile.TemporaryDirectory() as tmp:
        prm = args.prm or build_untrained_prm(args.model, Path(tmp) / "prm")
        scorer = PRMScorer(prm, device="cpu", batch_size=args.batch_size)
        scorer.score(*items[0])  # warm-up
        fast, t_fast = timed(lambda: scorer.score_batch(items))
        slow, t_slow = timed(lambda: [scorer.score_by_prefixes(q, trajs) for q, trajs in items])
    steps = sum(len(t) for _, trajs in items for t in trajs)
    tokens = [len(tokenize_trajectory(scorer.tokenizer, q, t, scorer.prompt_config).input_ids)
              for q, trajs in items for t in trajs]
    diff = max(abs(a - b) for f, s in zip(fast, slow) for ft, st in zip(f, s) for a, b in zip(ft, st))
    print(json.dumps({
        "model": args.prm or args.model, "questions_file": qfile, "questions": len(items),
        "trajectories": sum(len(t) for _, t in items), "steps_per_trajectory": 8, "steps": steps,
        "mean_tokens_per_trajectory": round(sum(tokens) / len(tokens), 1),
        "single_pass": {"seconds": round(t_fast, 2), "steps_per_s": round(steps / t_fast, 2)},
        "per_prefix": {"seconds": round(t_slow, 2), "steps_per_s": round(steps / t_slow, 2)},
        "ratio": round(t_slow / t_fast, 2), "max_abs_score_diff": float(f"{diff:.2e}"),
    }, indent=2))


if __name__ == "__main__":
    main()
