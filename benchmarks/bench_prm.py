"""PRM scoring per question: the scorer before the prefix-tree change vs now, and a forward-pass floor.

Scores the same questions (4 responses of ~155 tokens each by default, the README main job's
eval shape) with two scorers in one process, repeats interleaved so both arms see the same
machine load:

- ``old``: a faithful copy of the scorer as it was (:class:`OldPRMScorer`: the LoRA adapter
  unmerged, every trajectory encoded in full, right-padded, ``batch_size`` per pass);
- ``new``: :class:`meds3.train.PRMScorer` (adapter merged on float32, the responses of a
  question packed as a prefix tree in one row, so the question is encoded once per row).

It also times a plain forward (no scoring bookkeeping) of the old path's padded batches and
of the new path's packed rows on the merged model: the first is "one forward pass of the
responses", the second the floor of the new design. All figures are seconds per question,
best of ``--repeats`` (medians beside them), plus the largest score difference between the
arms (they must agree within 1e-5). With ``--per-prefix`` it also times
``score_by_prefixes`` (every step's prefix encoded on its own). With ``--precision bfloat16`` it
also times ``PRMScorer(..., precision="bfloat16")`` (arm ``new_bfloat16``) and reports its
speed ratio to ``new``, its largest score difference from ``new`` and how many questions P-VS
and best-of-N (min) answer the same from its scores. Without ``--prm`` it builds a
PRM of the paper's shape (LoRA r=64 on every linear layer plus the score head) with small
random LoRA weights, which costs the same to run as a trained one.

    python benchmarks/bench_prm.py --model smollm2-135m-instruct --questions 8 --responses 4
    python benchmarks/bench_prm.py --model smollm2-135m-instruct --questions 8 --precision bfloat16
    python benchmarks/bench_prm.py --smoke      # tiny-random-llama, 2 questions: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from meds3.data import load_questions
from meds3.data.prompts import ROOT_STEP, PromptConfig
from meds3.data.question import MedQuestion
from meds3.train import PRMScorer, PRMTrainConfig
from meds3.train.common import load_tokenizer, lora_config, resolve_device, write_meta
from meds3.train.labels import render_trajectory, tokenize_trajectory

QUESTIONS_FILE = "seed_data/clinical_calc_mc.jsonl"  # the main job's held-out questions come from here

STEP_TEMPLATES = [
    "The key findings in the question are the patient's history, vital signs and laboratory values.",
    "We need to identify which option is most consistent with these findings and the likely mechanism.",
    "First consider the most common cause in a patient of this age and presentation, then the alternatives.",
    "Option {a} would explain the acute onset, but it does not account for the laboratory abnormalities.",
    "Option {b} fits the time course and the pattern of the laboratory results described above.",
    "The remaining options are less likely because they would produce different physical examination signs.",
    "Putting the history, examination and tests together, the single best explanation is option {b}.",
    "Apply the formula to the values given, keeping the units consistent, and round at the end.",
    "Substituting the numbers gives an intermediate result that we compare with each option in turn.",
]


class OldPRMScorer:
    """The scorer as it was before the prefix-tree change (``meds3/train/scorer.py`` at commit
    4c6657b), kept here as the benchmark's baseline: LoRA unmerged, each trajectory in full."""

    def __init__(self, path, device: Optional[str] = None, batch_size: int = 8,
                 prompt_config: PromptConfig | None = None, base_model: Optional[str] = None):
        import torch
        from peft import PeftModel

        from meds3.engines.models import resolve_model
        from meds3.train.scorer import _read_meta, find_adapter_dir, load_prm_base

        self.adapter_dir = find_adapter_dir(path)
        meta = _read_meta(self.adapter_dir)
        base = base_model or meta.get("base_model")
        if not base:
            base = json.loads((self.adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        self.device = resolve_device(device or "auto")
        self.batch_size = batch_size
        self.prompt_config = prompt_config or PromptConfig(**meta.get("prompt", {}))
        self.tokenizer = load_tokenizer(self.adapter_dir)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = load_prm_base(resolve_model(base), self.tokenizer, dtype=dtype)
        self.model = PeftModel.from_pretrained(model, str(self.adapter_dir)).to(self.device).eval()

    def score_batch(self, items):
        flat = [(qi, ti, tokenize_trajectory(self.tokenizer, q, steps, self.prompt_config))
                for qi, (q, trajs) in enumerate(items) for ti, steps in enumerate(trajs)]
        scores = self._score_tokens([t for _, _, t in flat])
        out = [[[] for _ in trajs] for _, trajs in items]
        for (qi, ti, _), s in zip(flat, scores):
            out[qi][ti] = s
        return out

    def _score_tokens(self, tokens):
        import torch

        from meds3.train.scorer import step_probability

        order = sorted(range(len(tokens)), key=lambda i: -len(tokens[i].input_ids))  # little padding
        result = [[] for _ in tokens]
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), self.batch_size):
            idx = order[b: b + self.batch_size]
            n = len(tokens[idx[0]].input_ids)
            ids = torch.full((len(idx), n), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), n), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: real tokens keep positions 0..k-1
                k = len(tokens[i].input_ids)
                ids[row, :k] = torch.tensor(tokens[i].input_ids)
                mask[row, :k] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            probs = step_probability(logits.squeeze(-1)).cpu()
            for row, i in enumerate(idx):
                result[i] = probs[row, tokens[i].step_ends].tolist()
        return result


def build_prm(model: str, out: Path, seed: int = 0) -> Path:
    """A PRM output folder of the paper's shape with small random LoRA weights (nonzero, so a
    merged adapter really changes the weights) and a random score head."""
    import torch
    from peft import get_peft_model

    from meds3.engines.models import resolve_model
    from meds3.train.scorer import load_prm_base

    config = PRMTrainConfig(base_model=model, output_dir=str(out))
    base = resolve_model(model)
    tok = load_tokenizer(base)
    torch.manual_seed(seed)
    peft_model = get_peft_model(load_prm_base(base, tok), lora_config(config, "TOKEN_CLS"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.01)
    peft_model.save_pretrained(str(out / "adapter"))
    tok.save_pretrained(str(out / "adapter"))
    write_meta(out / "adapter", "prm", config, probability="sigmoid")
    return out


def make_responses(tokenizer: Any, n: int, mean_tokens: int, rng: random.Random,
                   config: PromptConfig | None = None) -> list[list[str]]:
    """``n`` responses (Step 0, reasoning steps, ``The answer is X.``) of about ``mean_tokens``
    tokens each (drawn within +-20 %), counted on the rendered steps."""
    out = []
    for _ in range(n):
        target = rng.randint(int(mean_tokens * 0.8), int(mean_tokens * 1.2))
        steps = [ROOT_STEP]
        final = f"The answer is {'ABCD'[rng.randrange(4)]}."
        while _tokens(tokenizer, render_trajectory(steps + [final], config)[0]) < target:
            steps.append(rng.choice(STEP_TEMPLATES).format(a="ABCD"[rng.randrange(4)], b="ABCD"[rng.randrange(4)]))
        out.append(steps + [final])
    return out


def _tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def _timed(fn) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _plain_forward(model, batches: Sequence[dict]) -> None:
    import torch

    with torch.inference_mode():
        for batch in batches:
            model(**batch)


def padded_batches(tokens: list, batch_size: int, pad: int, device: str) -> list[dict]:
    """The old path's forward inputs: trajectories longest first, right-padded, ``batch_size`` a pass."""
    import torch

    order = sorted(range(len(tokens)), key=lambda i: -len(tokens[i].input_ids))
    out = []
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        n = len(tokens[idx[0]].input_ids)
        ids = torch.full((len(idx), n), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, :len(tokens[i].input_ids)] = torch.tensor(tokens[i].input_ids)
            mask[row, :len(tokens[i].input_ids)] = 1
        out.append({"input_ids": ids.to(device), "attention_mask": mask.to(device)})
    return out


def packed_batches(scorer: PRMScorer, tokens: list, groups: list[list[int]]) -> list[dict]:
    """The new path's forward inputs (captured from one scoring call)."""
    captured: list[dict] = []
    model = scorer.model
    real_forward = model.forward

    def capture(**kwargs):
        captured.append(kwargs)
        return real_forward(**kwargs)

    model.forward = capture
    try:
        scorer._score_tokens(tokens, groups)
    finally:
        del model.forward
    return captured


def measure(model: str = "smollm2-135m-instruct", prm: Optional[str] = None, questions: int = 8,
            responses: int = 4, response_tokens: int = 155, repeats: int = 3, batch_size: int = 8,
            questions_file: str = QUESTIONS_FILE, seed: int = 0, per_prefix: bool = False,
            precision: Optional[str] = None) -> dict[str, Any]:
    """Seconds per question of the old and new scorer on the same items (one ``score_batch``
    call over all questions per repeat, as the evaluator calls it), best and median of
    ``repeats``, interleaved; the forward-pass floors; the largest score difference; with
    ``precision``, the new scorer at that precision beside it (:func:`compare_precision`)."""
    import torch

    qs: list[MedQuestion] = list(load_questions(questions_file))[:questions]
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp:
        path = prm or str(build_prm(model, Path(tmp) / "prm", seed))
        old = OldPRMScorer(path, device="cpu", batch_size=batch_size)
        new = PRMScorer(path, device="cpu", batch_size=batch_size)
        other = PRMScorer(path, device="cpu", batch_size=batch_size, precision=precision) if precision else None
    rng = random.Random(seed)
    items = [(q, make_responses(new.tokenizer, responses, response_tokens, rng, new.prompt_config)) for q in qs]
    tokens = [tokenize_trajectory(new.tokenizer, q, t, new.prompt_config) for q, trajs in items for t in trajs]
    groups = [list(range(k * responses, (k + 1) * responses)) for k in range(len(items))]
    padded = padded_batches(tokens, batch_size, new.tokenizer.pad_token_id, new.device)
    packed = packed_batches(new, tokens, groups)

    arms = {"old": lambda: old.score_batch(items), "new": lambda: new.score_batch(items),
            "forward_padded": lambda: _plain_forward(new.model, padded),
            "forward_packed": lambda: _plain_forward(new.model, packed)}
    if other is not None:
        arms[f"new_{precision}"] = lambda: other.score_batch(items)
    if per_prefix:
        arms["per_prefix"] = lambda: [new.score_by_prefixes(q, trajs) for q, trajs in items]
    results = {name: fn() for name, fn in arms.items() if name != "per_prefix"}  # warm-up; old/new scores kept
    times: dict[str, list[float]] = {name: [] for name in arms}
    for rep in range(repeats):
        names = list(arms) if rep % 2 == 0 else list(reversed(arms))  # alternate who goes first
        for name in names:
            _, seconds = _timed(arms[name])
            times[name].append(seconds / len(items))
    diff = max((abs(a - b) for o, n in zip(results["old"], results["new"])
                for ot, nt in zip(o, n) for a, b in zip(ot, nt)), default=0.0)
    heads = [len(tokenize_trajectory(new.tokenizer, q, [ROOT_STEP], new.prompt_config).input_ids) for q, _ in items]
    row: dict[str, Any] = {
        "model": prm or model, "questions_file": questions_file, "questions": len(items),
        "responses_per_question": responses, "batch_size": batch_size, "repeats": repeats,
        "mean_tokens_per_trajectory": round(sum(len(t.input_ids) for t in tokens) / len(tokens), 1),
        "mean_question_tokens": round(sum(heads) / len(heads), 1),
        "mean_steps_per_trajectory": round(sum(len(t.step_ends) for t in tokens) / len(tokens), 2),
        "tokens_encoded_old": sum(int(b["attention_mask"].sum()) for b in padded),
        "tokens_encoded_new": sum(int((b["input_ids"] != new.tokenizer.pad_token_id).sum()) for b in packed),
        "s_per_question": {name: round(min(v), 4) for name, v in times.items()},
        "s_per_question_median": {name: round(statistics.median(v), 4) for name, v in times.items()},
        "ratio_old_over_new": round(min(times["old"]) / min(times["new"]), 2),
        "ratio_old_over_new_median": round(statistics.median(times["old"]) / statistics.median(times["new"]), 2),
        "max_abs_score_diff": float(f"{diff:.2e}"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "load_avg_1m_start": load_start,
                    "load_avg_1m_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }
    if other is not None:
        row[f"precision_{precision}"] = compare_precision(items, results["new"], results[f"new_{precision}"],
                                                          times["new"], times[f"new_{precision}"])
    return row


def compare_precision(items: Sequence, base: list, scores: list, base_times: list[float],
                      times: list[float]) -> dict[str, Any]:
    """A precision arm against the default scorer: speed ratio (best and median), largest score
    difference, and the questions whose P-VS and best-of-N (min) answer stays the same."""
    from meds3.infer.selectors import get_selector

    answers = [[re.search(r"answer is ([A-D])", t[-1]).group(1) for t in trajs] for _, trajs in items]
    same = {name: sum(get_selector(name)(a, b).answer == get_selector(name)(a, s).answer
                      for a, b, s in zip(answers, base, scores)) for name in ("p-vs", "best-of-n-min")}
    diff = max((abs(x - y) for o, n in zip(base, scores) for ot, nt in zip(o, n) for x, y in zip(ot, nt)),
               default=0.0)
    return {"ratio_new_over_this": round(min(base_times) / min(times), 2),
            "ratio_new_over_this_median": round(statistics.median(base_times) / statistics.median(times), 2),
            "ratio_per_repeat": [round(b / t, 2) for b, t in zip(base_times, times)],
            "max_abs_score_diff_vs_new": float(f"{diff:.2e}"),
            "same_answer": {name: f"{n}/{len(items)}" for name, n in same.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="base model (ignored with --prm)")
    p.add_argument("--prm", help="a trained PRM output folder (default: a random one of the paper's shape)")
    p.add_argument("--questions-file", default=QUESTIONS_FILE)
    p.add_argument("--questions", type=int, default=8, help="questions scored in one call (the evaluator's 8)")
    p.add_argument("--responses", type=int, default=4, help="responses per question")
    p.add_argument("--response-tokens", type=int, default=155, help="mean tokens per response")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--per-prefix", action="store_true", help="also time score_by_prefixes (slow)")
    p.add_argument("--precision", choices=["float32", "bfloat16"],
                   help="also time the new scorer at this precision (PRMScorer(..., precision=...))")
    p.add_argument("--smoke", action="store_true", help="tiny-random-llama, 2 questions of 2 short responses")
    p.add_argument("--json", help="also write the row to this file")
    args = p.parse_args()
    if args.smoke:
        args.model, args.prm, args.questions, args.responses, args.response_tokens, args.repeats = (
            "tiny-random-llama", None, 2, 2, 40, 1)
    row = measure(args.model, args.prm, args.questions, args.responses, args.response_tokens, args.repeats,
                  args.batch_size, args.questions_file, per_prefix=args.per_prefix, precision=args.precision)
    line = json.dumps(row)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
