"""``meds3 seeds generate`` and ``meds3 seeds build``: make seed question sets."""

from __future__ import annotations

import argparse
import logging
from collections import Counter

from meds3.config import load_config
from meds3.data.loaders import save_questions
from meds3.data.mix import build_mix
from meds3.data.seeds import SeedGenConfig, generate_seeds

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seeds", help="generate or mix seed questions")
    ssub = p.add_subparsers(dest="seeds_command", metavar="ACTION")
    ssub.required = True
    gen = ssub.add_parser("generate", help="generate clinical-calculation questions")
    gen.add_argument("--config", help="YAML file of SeedGenConfig fields")
    gen.add_argument("--n", type=int, help="number of questions (default 500)")
    gen.add_argument("--seed", type=int, help="random seed (default 0)")
    gen.add_argument("-o", "--output", help="output JSONL (default seed_data/clinical_calc.jsonl)")
    gen.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. levels=[hard]")
    gen.set_defaults(func=run_generate)
    build = ssub.add_parser("build", help="draw a seed mix from files listed in a manifest")
    build.add_argument("manifest", help="YAML manifest: sources (path, n, format) and seed")
    build.add_argument("-o", "--output", required=True, help="output JSONL")
    build.add_argument("overrides", nargs="*", metavar="key=value", help="manifest overrides, e.g. seed=1")
    build.set_defaults(func=run_build)


def run_generate(args: argparse.Namespace) -> int:
    flags = [f"{k}={v}" for k, v in (("n", args.n), ("seed", args.seed), ("output", args.output)) if v is not None]
    config = load_config(SeedGenConfig, args.config, [*flags, *args.overrides])
    qs = generate_seeds(config)
    path = save_questions(config.output, qs)
    levels = Counter(q.metadata.get("level") for q in qs)
    print(f"wrote {len(qs)} questions to {path} (seed {config.seed}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())) + ")")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from meds3.data.mix import MixManifest

    manifest = load_config(MixManifest, args.manifest, args.overrides)
    questions = build_mix(manifest, base_dir=Path(args.manifest).parent)
    path = save_questions(args.output, questions)
    sources = Counter(q.source for q in questions)
    print(f"wrote {len(questions)} questions to {path}: " + ", ".join(f"{k} {v}" for k, v in sources.items()))
    return 0
