"""``meds3 data check FILE...``: load data files and report what they hold and what is wrong.
``meds3 data overlap SEEDS... --against EVALS...``: seed questions that duplicate evaluation questions."""

from __future__ import annotations

import argparse
from collections import Counter

from meds3.cli.fetch_cmd import add_fetch_parser
from meds3.data import load_questions
from meds3.data.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect question files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    add_fetch_parser(dsub)
    check = dsub.add_parser("check", help="load files, report counts and malformed records")
    check.add_argument("files", nargs="+", help="data files in any supported format")
    check.add_argument("--format", default="auto", help="format name (default: auto-detect)")
    check.add_argument("--strict", action="store_true", help="stop at the first malformed record")
    check.set_defaults(func=run_check)
    overlap = dsub.add_parser("overlap", help="seed questions duplicating evaluation questions (exit 1 if any)")
    overlap.add_argument("seeds", nargs="+", help="seed question files in any supported format")
    overlap.add_argument("--against", nargs="+", required=True, metavar="EVALS", help="evaluation question files")
    overlap.add_argument("--threshold", type=float, default=None,
                         help="n-gram overlap coefficient at which a pair is a near duplicate (default 0.5; "
                              "above 1: exact duplicates only)")
    overlap.add_argument("--ngram", type=int, default=None, help="word n-gram size of the near check (default 5)")
    overlap.add_argument("--format", default="auto", help="format name of every file (default: auto-detect)")
    overlap.add_argument("--json", metavar="OUT", help="also write the full report (every pair) as JSON")
    overlap.add_argument("--show", type=int, default=10, help="pairs printed (default 10)")
    overlap.set_defaults(func=run_overlap)


def run_overlap(args: argparse.Namespace) -> int:
    """Print counts per evaluation file and the first pairs; exit 0 when no seed question
    overlaps an evaluation question, 1 when some do, 2 for a bad option or an unreadable file."""
    from meds3.config import ConfigError
    from meds3.data.loaders import known_formats
    from meds3.data.overlap import DEFAULT_NGRAM, DEFAULT_THRESHOLD, check_files
    from meds3.io import atomic_write_text

    if args.format not in known_formats():
        raise ConfigError(f"--format {args.format!r} is not a known format; known: {', '.join(known_formats())}")
    ngram = DEFAULT_NGRAM if args.ngram is None else args.ngram
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if ngram < 1:
        raise ConfigError(f"--ngram must be >= 1, got {ngram}")
    if not threshold > 0:
        raise ConfigError(f"--threshold must be > 0, got {threshold}")
    report = check_files(args.seeds, args.against, ngram=ngram, threshold=threshold, format=args.format)
    print(report.summary(max_pairs=max(0, args.show)))
    if args.json:
        atomic_write_text(args.json, report.to_json() + "\n")
    return 1 if report.found else 0


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
