"""``meds3 data fetch NAME... | --all | --list``: download public benchmarks as meds3 JSONL."""

from __future__ import annotations

import argparse


def add_fetch_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``fetch`` action to ``meds3 data``'s subparsers; returns its parser."""
    p = data_subparsers.add_parser(
        "fetch", help="download public benchmarks, normalized to meds3 JSONL, with a manifest",
        description="Download each named benchmark from its public source (Hugging Face or a pinned GitHub "
                    "file), normalize it to DIR/NAME.jsonl and record source, revision, license and sha256 in "
                    "DIR/manifest.json. Sets already fetched are skipped. --list shows every known set.")
    p.add_argument("names", nargs="*", metavar="NAME", help="sets to fetch (see --list)")
    p.add_argument("--all", action="store_true", help="fetch every set that has a public source")
    p.add_argument("--list", action="store_true", help="list every known set with source, license, size, split")
    p.add_argument("-o", "--output-dir", default="data/eval", metavar="DIR", help="output folder (default: data/eval)")
    p.add_argument("--revision", default=None,
                   help="Hugging Face revision or GitHub commit for the named sets (default: the registry's pin; "
                        "the manifest records the commit it resolved to)")
    p.add_argument("--force", action="store_true", help="fetch again even when the output is up to date")
    p.add_argument("--hub-cache", default=None, metavar="DIR", help="Hugging Face cache folder (read first)")
    p.set_defaults(func=run_fetch)
    return p


def run_fetch(args: argparse.Namespace) -> int:
    """0 when every requested set was fetched or up to date; 1 when any failed or has no
    public source (named explicitly); 2 for a usage error."""
    from meds3.data.fetch import fetch, list_sources
    from meds3.data.sources import SOURCES

    if args.list:
        list_sources()
        return 0
    if args.all == bool(args.names):
        print("meds3 data fetch: give set names or --all (see --list)")
        return 2
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        print(f"meds3 data fetch: unknown set(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
        return 2
    names = [n for n, s in SOURCES.items() if s.available] if args.all else args.names
    result = fetch(names, args.output_dir, revision=args.revision, force=args.force, hub_cache=args.hub_cache)
    if result.failed:
        print(f"failed: {', '.join(result.failed)}")
    if result.unavailable:
        print(f"no public source: {', '.join(result.unavailable)} (see --list)")
    return 1 if result.failed or result.unavailable else 0
