"""``meds3 rollout`` (search seed questions into trees) and ``meds3 tree show``."""

from __future__ import annotations

import argparse
import json

from meds3.config import load_config
from meds3.data.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="run the MCTS search over seed questions and store the trees")
    p.add_argument("--config", help="YAML file of RolloutConfig fields")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. limit=8 search.max_nodes=30 model=tiny-random-llama")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="if output_dir holds trees searched with other settings, move them to "
                        "output_dir/superseded-<time>/ and start afresh (default: refuse, naming the keys)")
    p.add_argument("--ray", action="store_true",
                   help="run on Ray actors (ray.* config keys); starts a local Ray instance unless an address is given")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join a running Ray cluster ('auto', or host:port); implies --ray (default: $RAY_ADDRESS)")
    p.add_argument("--push-to-hub", metavar="REPO",
                   help="after the search, push the trees with a dataset card to the Hub dataset repository "
                        "owner/name (MEDS3_HUB_DIR: a folder hub instead; see docs/hub.md)")
    p.set_defaults(func=run_rollout_cmd)
    t = sub.add_parser("tree", help="inspect stored trees")
    tsub = t.add_subparsers(dest="tree_command", metavar="ACTION")
    tsub.required = True
    show = tsub.add_parser("show", help="print a tree readably")
    show.add_argument("file", help="a tree shard (JSONL) or a rollout output folder")
    show.add_argument("--id", help="question id (default: the first tree)")
    show.add_argument("--width", type=int, default=70, help="characters of step text shown (default 70)")
    show.set_defaults(func=run_tree_show)


def run_rollout_cmd(args: argparse.Namespace) -> int:
    from meds3.cli.eval_cmd import force_kwargs, ray_overrides
    from meds3.rollout import RolloutConfig, run_rollout

    config = load_config(RolloutConfig, args.config, ray_overrides(args))
    result = run_rollout(config, progress=not args.no_progress, **force_kwargs(args))
    print(json.dumps(result.to_dict(), indent=2))
    if args.push_to_hub:
        from meds3.hub import push_dataset

        push_dataset(config.output_dir, args.push_to_hub, kind="trees")  # logs the URL: stdout stays JSON
    return 0


def run_tree_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from meds3.mcts.node import Tree
    from meds3.mcts.show import format_tree
    from meds3.rollout.store import TreeStore

    path = Path(args.file)
    if path.is_dir():
        store_dir = path / "trees" if (path / "trees").is_dir() else path
        trees = TreeStore(store_dir).iter_trees()
    elif path.exists():
        trees = (Tree.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip())
    else:
        raise DataError(str(path), None, "file does not exist")
    for tree in trees:
        if args.id is None or tree.question.id == args.id:
            print(format_tree(tree, args.width))
            return 0
    raise DataError(str(path), None, f"no tree for question {args.id!r}" if args.id else "no trees")
