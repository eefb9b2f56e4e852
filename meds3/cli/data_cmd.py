"""``meds3 data check FILE...``: load data files and report what they hold and what is wrong."""

from __future__ import annotations

import argparse
from collections import Counter

from meds3.data import load_questions
from meds3.data.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect question files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    check = dsub.add_parser("check", help="load files, report counts and malformed records")
    check.add_argument("files", nargs="+", help="data files in any supported format")
    check.add_argument("--format", default="auto", help="format name (default: auto-detect)")
    check.add_argument("--strict", action="store_true", help="stop at the first malformed record")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print per-file counts by task type and domain; exit 1 if any record was malformed
    (questions their verifier cannot check included), 2 for an unknown ``--format``."""
    from meds3.config import ConfigError
    from meds3.data.loaders import known_formats

    if args.format not in known_formats():
        raise ConfigError(f"--format {args.format!r} is not a known format; known: {', '.join(known_formats())}")
    status = 0
    for path in args.files:
        try:
            qs = load_questions(path, format=args.format, on_error="raise" if args.strict else "skip")
        except DataError as exc:
            print(f"FAIL {exc}")
            status = 1
            continue
        types = ", ".join(f"{k} {v}" for k, v in sorted(Counter(q.task_type for q in qs).items()))
        print(f"ok   {path}: {len(qs)} questions ({qs.report.format}; {types})")
        if qs.report.skipped:
            print(qs.report.summary())
            status = 1
    return status
