"""``meds3 evolve``: the self-evolution loop (rollout, training, evaluation), resumable."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evolve", help="run (or resume) the MedS3 self-evolution loop")
    p.add_argument("--config", help="YAML file of EvolveConfig fields (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. iterations=2 rollout.search.max_nodes=20 eval.n=8")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="start afresh every stage made with other settings (and those after it; the whole loop "
                        "when the seed split changed), moving old outputs to superseded-<time>/ (default: refuse)")
    p.set_defaults(func=run_evolve_cmd)


def run_evolve_cmd(args: argparse.Namespace) -> int:
    from meds3.cli.eval_cmd import force_kwargs
    from meds3.config import load_config
    from meds3.evolve import EvolveConfig, run

    config = load_config(EvolveConfig, args.config, args.overrides)
    report = run(config, progress=not args.no_progress, **force_kwargs(args))
    print(report["table"])
    print(f"\nreport: {config.output_dir}/report.md, plot: {config.output_dir}/accuracy_by_iteration.png")
    return 0
