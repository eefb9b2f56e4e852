"""``meds3 verify FILE --id ID [--text TEXT]``: check one model output against a question's gold answer."""

from __future__ import annotations

import argparse
import sys

from meds3.data import load_questions
from meds3.data.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="verify a model output against a question")
    p.add_argument("file", help="question file")
    p.add_argument("--id", required=True, help="question id")
    p.add_argument("--text", help="model output (default: read standard input)")
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print the verdict; exit 0 if correct, 1 if incorrect, 3 if unverifiable, 2 for a
    question file or question that cannot be checked."""
    from meds3.verify import verify

    questions = {q.id: q for q in load_questions(args.file)}
    if args.id not in questions:
        raise DataError(args.file, None, f"no question with id {args.id!r}")
    text = args.text if args.text is not None else sys.stdin.read()
    try:
        verdict = verify(text, questions[args.id])
    except ValueError as exc:  # a question the loader let through but its verifier cannot check
        raise DataError(args.file, None, f"question {args.id!r} cannot be verified: {exc}") from None
    label = {True: "correct", False: "incorrect", None: "unverifiable"}[verdict.correct]
    print(f"{label}: extracted={verdict.extracted!r} ({verdict.reason})")
    return {True: 0, False: 1, None: 3}[verdict.correct]
