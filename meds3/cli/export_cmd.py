"""``meds3 export --trees DIR... --format sft|prm|dpo --out FILE.jsonl``: search trees as
JSON lines that other training tools read (:mod:`meds3.export`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable


def register(sub: argparse._SubParsersAction) -> None:
    from meds3.export import DEFAULT_MAX_PAIRS, DEFAULT_THRESHOLD, FORMATS

    p = sub.add_parser("export", help="export search trees as SFT, PRM or DPO JSON lines (TRL formats)",
                       description="sft: chat messages of the policy's training paths; prm: TRL stepwise "
                                   "supervision; dpo: TRL conversational preference pairs (docs/export.md)")
    p.add_argument("--trees", nargs="+", required=True, metavar="DIR_OR_FILE",
                   help="rollout output folders, tree folders or shard files")
    p.add_argument("--format", required=True, choices=FORMATS, help="record format")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="output file (written atomically)")
    p.add_argument("--prompt-config", metavar="YAML", help="PromptConfig fields (default: the paper's prompt)")
    p.add_argument("--no-dedupe", action="store_true", help="keep paths whose step texts repeat an earlier one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("sft")
    g.add_argument("--top-k", type=int, help="keep the k paths per question with the highest minimum step value")
    g.add_argument("--max-per-question", type=int, help="then at most this many paths per question")
    g = p.add_argument_group("prm")
    g.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"a step is good when its value >= this (default {DEFAULT_THRESHOLD})")
    g.add_argument("--max-pos-per-question", type=int, help="correct paths per question (default all)")
    g.add_argument("--max-neg-per-question", type=int, help="incorrect paths per question (default all)")
    g.add_argument("--keep-one-sided", action="store_true",
                   help="also questions whose paths are all correct or all incorrect")
    g = p.add_argument_group("dpo")
    g.add_argument("--max-pairs-per-question", type=int, default=DEFAULT_MAX_PAIRS,
                   help=f"pairs kept per question, deepest divergence first (default {DEFAULT_MAX_PAIRS})")
    g.add_argument("--min-shared-steps", type=int, default=0, help="steps after Step 0 a pair must share (default 0)")
    g.add_argument("--seed", type=int, default=0, help="orders pairs that share as many steps (default 0)")
    p.set_defaults(func=run_export)


def exporter(args: argparse.Namespace) -> Callable[[Iterable[Any]], list[dict[str, Any]]]:
    """The function that turns trees into records of ``args.format``, its options checked
    before any tree is read.

    Raises:
        ConfigError: an option value the format refuses (naming it), or a bad prompt config.
    """
    from meds3.config import ConfigError, load_config
    from meds3.data.prompts import PromptConfig
    from meds3.export import check_dpo_options, dpo_export, prm_export, sft_export
    from meds3.export.prm import check_threshold
    from meds3.train.data import PRMDataConfig, SFTDataConfig

    prompt = load_config(PromptConfig, args.prompt_config) if args.prompt_config else PromptConfig()
    dedupe = not args.no_dedupe
    try:
        if args.format == "sft":
            sft = SFTDataConfig(top_k=args.top_k, dedupe=dedupe, max_per_question=args.max_per_question)
            return lambda trees: sft_export(trees, sft, prompt)
        if args.format == "prm":
            prm = PRMDataConfig(dedupe=dedupe, max_pos_per_question=args.max_pos_per_question,
                                max_neg_per_question=args.max_neg_per_question,
                                require_pos_and_neg=not args.keep_one_sided)
            check_threshold(args.threshold)
            return lambda trees: prm_export(trees, prm, args.threshold, prompt)
        check_dpo_options(args.max_pairs_per_question, args.min_shared_steps)
        return lambda trees: dpo_export(trees, args.max_pairs_per_question, args.seed, args.min_shared_steps,
                                        prompt, dedupe)
    except ValueError as exc:  # why: the configs and exporters name the option they refuse
        raise ConfigError(str(exc)) from exc


def run_export(args: argparse.Namespace) -> int:
    """Write the export and print one summary line (records, questions, trees read).

    Raises:
        DataError: unreadable trees, or trees that give no record of this format.
    """
    from tqdm.auto import tqdm

    from meds3.data.errors import DataError
    from meds3.train.data import iter_trees, write_jsonl

    export = exporter(args)
    bar = tqdm(iter_trees(args.trees), desc="trees", unit="tree", disable=args.no_progress, dynamic_ncols=True)
    counted = {"trees": 0}

    def counting():
        for tree in bar:
            counted["trees"] += 1
            yield tree

    records = export(counting())
    bar.close()
    if not records:
        raise DataError(" ".join(args.trees), None, f"no {args.format} records in {counted['trees']} tree(s) "
                                                    "(see docs/export.md for which paths each format keeps)")
    write_jsonl(records, args.out)
    questions = len({r["question_id"] for r in records})
    print(f"exported {len(records)} {args.format} records ({questions} questions, "
          f"{counted['trees']} trees read) to {args.out}")
    return 0
