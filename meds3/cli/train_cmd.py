"""``meds3 train policy`` (LoRA SFT on correct trajectories) and ``meds3 train prm`` (the
process reward model), both from rollout trees."""

from __future__ import annotations

import argparse
import dataclasses
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the policy (LoRA SFT) or the PRM from search trees")
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT")
    tsub.required = True
    for name, helptext in (("policy", "LoRA SFT of the policy on correct trajectories"),
                           ("prm", "LoRA process reward model on correct and incorrect trajectories")):
        t = tsub.add_parser(name, help=helptext)
        t.add_argument("--trees", nargs="+", metavar="DIR",
                       help="rollout output folders, tree folders or shard files (config key 'trees')")
        t.add_argument("--base", metavar="MODEL", help="base model: path, alias or hub id (config key 'base_model')")
        t.add_argument("-o", "--output", metavar="OUT", help="output folder (config key 'output_dir')")
        cls_name = "PolicyTrainConfig" if name == "policy" else "PRMTrainConfig"
        t.add_argument("--config", help=f"YAML file of {cls_name} fields")
        t.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. max_steps=20 r=8 data.top_k=2")
        t.add_argument("--no-progress", action="store_true", help="no progress bar")
        t.add_argument("--push-to-hub", metavar="REPO",
                       help="after training, push the adapter with a model card to the Hub repository "
                            "owner/name (MEDS3_HUB_DIR: a folder hub instead; see docs/hub.md)")
        t.set_defaults(func=run_train, train_kind=name)


def build_config(args: argparse.Namespace):
    """The job's config: YAML file, then ``key=value`` overrides, then the flags.

    Raises:
        ConfigError: unknown keys or bad values, naming the key.
    """
    from meds3.config import ConfigError, load_config
    from meds3.train import PolicyTrainConfig, PRMTrainConfig

    cls = PolicyTrainConfig if args.train_kind == "policy" else PRMTrainConfig
    trees, overrides = split_trees(args.trees or [], args.overrides)
    config = load_config(cls, args.config, overrides)
    flags = {"trees": trees, "base_model": args.base, "output_dir": args.output}
    try:
        return dataclasses.replace(config, **{k: v for k, v in flags.items() if v})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def split_trees(trees: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """``--trees A B key=value`` gives argparse ``[A, B, key=value]``: items with ``=`` that
    are not existing paths are overrides."""
    from pathlib import Path

    is_override = [("=" in t and not Path(t).exists()) for t in trees]
    return ([t for t, o in zip(trees, is_override) if not o],
            [t for t, o in zip(trees, is_override) if o] + list(overrides))


def run_train(args: argparse.Namespace) -> int:
    from meds3.config import ConfigError
    from meds3.engines.models import ModelResolutionError, resolve_model
    from meds3.train import train_policy, train_prm

    config = build_config(args)
    if not config.trees:
        raise ConfigError("trees: give --trees DIR... or set 'trees' in the config")
    try:
        resolve_model(config.base_model)
    except ModelResolutionError as exc:
        raise ConfigError(f"base_model: {exc}") from exc
    train = train_policy if args.train_kind == "policy" else train_prm
    result = train(config, progress=not args.no_progress)
    # every loss is in summary.json; fields that do not apply to this kind (None) are left out
    print(json.dumps({k: v for k, v in result.to_dict().items() if k != "losses" and v is not None}, indent=2))
    if args.push_to_hub:
        from meds3.hub import push_adapter, push_prm

        push = push_adapter if args.train_kind == "policy" else push_prm
        push(config.output_dir, args.push_to_hub)  # logs the URL: stdout stays the JSON summary
    return 0
