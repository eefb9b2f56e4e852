"""``meds3 eval``: benchmark evaluation with N samples, selectors and budget sweeps."""

from __future__ import annotations

import argparse

from meds3.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a policy (and PRM) on benchmark files; resumable")
    p.add_argument("--config", help="YAML file of EvalConfig fields")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. limit=10 n=8 prm=runs/real/prm 'selectors=[majority,p-vs]'")
    p.add_argument("--rescore", action="store_true",
                   help="generate nothing: add missing PRM scores and recompute tables from saved responses")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="if output_dir holds responses generated with other settings, move them to "
                        "output_dir/superseded-<time>/ and start afresh (default: refuse, naming the keys)")
    p.add_argument("--ray", action="store_true",
                   help="generate on Ray actors (ray.* config keys); starts a local Ray instance unless an address "
                        "is given")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join a running Ray cluster ('auto', or host:port); implies --ray (default: $RAY_ADDRESS)")
    p.set_defaults(func=run_eval_cmd)


def ray_overrides(args: argparse.Namespace) -> list[str]:
    """The command's overrides plus what ``--ray`` / ``--ray-address`` set."""
    overrides = list(args.overrides)
    if args.ray or args.ray_address:
        overrides.append("ray.enabled=true")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    return overrides


def force_kwargs(args: argparse.Namespace) -> dict:
    """``{"force": True}`` when ``--force`` was given (else nothing: the runner's default)."""
    return {"force": True} if getattr(args, "force", False) else {}


def run_eval_cmd(args: argparse.Namespace) -> int:
    from meds3.eval import EvalConfig, markdown_table, run_eval

    config = load_config(EvalConfig, args.config, ray_overrides(args))
    result = run_eval(config, progress=not args.no_progress, rescore=args.rescore, **force_kwargs(args))
    print(markdown_table(result.results), end="")
    print(f"outputs in {result.output_dir}")
    return 0
