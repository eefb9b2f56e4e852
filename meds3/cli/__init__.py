"""The ``meds3`` command: one subcommand module per stage, registered in COMMANDS."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from meds3 import __version__
from meds3.config import ConfigError
from meds3.data.errors import DataError
from meds3.hub import HubError
from meds3.mcts.forest import EngineFailure

# Modules that define ``register(subparsers)``; each adds its subcommands.
COMMANDS = (
    "meds3.cli.data_cmd",
    "meds3.cli.seeds_cmd",
    "meds3.cli.verify_cmd",
    "meds3.cli.rollout_cmd",
    "meds3.cli.train_cmd",
    "meds3.cli.demo_cmd",
    "meds3.cli.eval_cmd",
    "meds3.cli.evolve_cmd",
    "meds3.cli.export_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    import importlib

    parser = argparse.ArgumentParser(prog="meds3", description="Medical small LMs with self-evolved slow thinking.")
    parser.add_argument("--version", action="version", version=f"meds3 {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meds3`` console script; returns the exit status.

    User errors (bad data, bad config) print one clear line and exit with status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (DataError, ConfigError, HubError) as exc:
        print(f"meds3: error: {exc}", file=sys.stderr)
        return 2
    except EngineFailure as exc:  # the job stopped; its finished work is stored and a rerun resumes
        print(f"meds3: error: the generation engine failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("meds3: interrupted", file=sys.stderr)
        return 130
