"""Download public benchmarks, normalize them to meds3 JSONL and record a checksummed manifest.

``fetch(["medqa", "pubmedqa"], "data/eval")`` writes ``data/eval/medqa.jsonl``,
``data/eval/pubmedqa.jsonl`` and ``data/eval/manifest.json``. Every set's license is printed
before its download. A set whose output file still matches the sha256 in the manifest and was
fetched at the requested revision (default: the registry's pin) is not fetched again;
``force=True`` refetches it. A set that fails (network, a file missing at that revision,
malformed data) is reported with its name and URL; the other sets still run, and the result
says which failed.

Downloads go through a *downloader* ``(source, revision, hub_cache) -> Download``. The default
one reads Hugging Face datasets with ``huggingface_hub.snapshot_download`` (or a local folder
laid out like the Hub cache, with no network at all) and GitHub files from
``raw.githubusercontent.com`` at the pinned commit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from meds3.data.errors import FieldError
from meds3.data.sources import SOURCES, Source, all_records, get_source
from meds3.io import atomic_open, atomic_write_json

MANIFEST = "manifest.json"
GITHUB_RAW = "https://raw.githubusercontent.com"
urlopen = urllib.request.urlopen  # replaced in tests


class FetchError(RuntimeError):
    """A set could not be fetched; the message names the set and the URL."""


@dataclass
class Download:
    """What a downloader returns: local files, the commit the revision resolved to, the URL."""

    files: list[Path]
    revision: str
    url: str
    temporary: Path | None = None  # a folder to remove once the files are read


Downloader = Callable[[Source, str, "str | os.PathLike | None"], Download]


@dataclass
class FetchResult:
    """Per-set outcome of :func:`fetch`: ``fetched``, ``skipped`` (up to date), ``unavailable``
    (no public source) and ``failed`` (name -> message)."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


# ---------------------------------------------------------------- downloaders

def _snapshot_in_cache(cache: Path, repo: str, revision: str) -> Path | None:
    """The snapshot folder of ``repo`` at ``revision`` in a Hub cache folder, if it is there.

    Layout (``huggingface_hub``'s): ``datasets--owner--name/refs/<revision>`` holds a commit
    hash, ``datasets--owner--name/snapshots/<commit>/...`` the files.
    """
    root = cache / ("datasets--" + repo.replace("/", "--"))
    ref = root / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snap = root / "snapshots" / commit
    return snap if snap.is_dir() else None


def _matching(snapshot: Path, groups: Iterable[list[str]]) -> list[Path]:
    """Per group (one per config), the files of its first glob that matches anything."""
    files: list[Path] = []
    for alternatives in groups:
        for pattern in alternatives:
            found = [p for p in sorted(snapshot.glob(pattern)) if p.is_file() and p not in files]
            if found:
                files.extend(found)
                break
    return files


def download_hf(source: Source, revision: str, hub_cache: str | os.PathLike | None = None) -> Download:
    """A Hugging Face dataset's files at ``revision``: from ``hub_cache`` when the snapshot is
    already there (no network), else through ``huggingface_hub.snapshot_download``."""
    url = source.urls(revision)[0]
    snapshot = _snapshot_in_cache(Path(hub_cache), source.repo, revision) if hub_cache else None
    if snapshot is None:
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise FetchError(f"{source.name}: downloading {url} needs huggingface_hub "
                             f"(pip install huggingface_hub)") from None
        try:
            snapshot = Path(snapshot_download(source.repo, repo_type="dataset", revision=revision,
                                              allow_patterns=source.patterns(),
                                              cache_dir=str(hub_cache) if hub_cache else None))
        except Exception as exc:  # network, gated repository, unknown revision
            hint = " (gated: accept its terms on the Hub and set HF_TOKEN)" if source.gated else ""
            raise FetchError(f"{source.name}: could not download {url}{hint}: {exc}") from exc
    files = _matching(snapshot, source.pattern_groups())
    if not files:
        raise FetchError(f"{source.name}: no file matching {', '.join(source.patterns())} in {url}")
    return Download(files, snapshot.name, url)


def download_github(source: Source, revision: str, hub_cache: str | os.PathLike | None = None) -> Download:
    """The source's raw files from GitHub at commit ``revision`` (into a temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix=f"meds3-fetch-{source.name}-"))
    files = []
    for path in source.paths:
        url = f"{GITHUB_RAW}/{source.repo}/{revision}/{path}"
        target = folder / Path(path).name
        try:
            with urlopen(url, timeout=60) as response, open(target, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise FetchError(f"{source.name}: could not download {url}: {exc}") from exc
        files.append(target)
    return Download(files, revision, f"{GITHUB_RAW}/{source.repo}/{revision}/{','.join(source.paths)}", folder)


def default_downloader(source: Source, revision: str, hub_cache: str | os.PathLike | None = None) -> Download:
    """Dispatch on ``source.kind`` (``hf`` or ``github``)."""
    if source.kind == "hf":
        return download_hf(source, revision, hub_cache)
    if source.kind == "github":
        return download_github(source, revision, hub_cache)
    raise FetchError(f"{source.name}: no public source: {source.reason}")


# ---------------------------------------------------------------- normalization

def normalize(source: Source, download: Download) -> tuple[list[dict[str, Any]], list[str]]:
    """meds3 JSONL records of a download, and one message per malformed record skipped."""
    if source.normalizer is None:
        raise FetchError(f"{source.name}: no normalizer registered")
    pairs = source.reader(download.files) if source.reader else all_records(source, download.files)
    origin = f"{source.repo}@{download.revision}"
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, (record, extra) in enumerate(pairs):
        if source.keep is not None and not source.keep(record):
            continue
        ctx = {"stem": source.name, "split": source.split, "source": source.title, **source.ctx, **extra}
        try:
            question = source.normalizer(record, index, ctx)
        except (FieldError, KeyError, TypeError, ValueError) as exc:
            field_name = getattr(exc, "field", None)
            problems.append(f"{extra.get('file', '')} record {index}: {field_name + ': ' if field_name else ''}{exc}")
            continue
        row = question.to_dict()
        row["metadata"].setdefault("split", ctx.get("split"))
        base, n = row["id"], 1
        while row["id"] in seen:
            n += 1
            row["id"] = f"{base}_{n}"
        seen.add(row["id"])
        where = extra.get("file", "")
        row["license"] = source.license
        row["origin"] = f"{origin}:{where}" if where else origin
        out.append(row)
    return out, problems


# ---------------------------------------------------------------- manifest and fetch

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``DIR/manifest.json`` (``{"sets": {}}`` when absent or unreadable)."""
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {"sets": {}}
    if not isinstance(data, dict) or not isinstance(data.get("sets"), dict):
        return {"sets": {}}
    return data


def up_to_date(out_dir: str | os.PathLike, name: str, revision: str | None = None) -> bool:
    """Whether ``DIR/<name>.jsonl`` exists, matches its manifest sha256 and (when given) was
    fetched at ``revision`` (as requested, or the commit it resolved to)."""
    entry = read_manifest(out_dir)["sets"].get(name)
    path = Path(out_dir) / f"{name}.jsonl"
    if not entry or not path.is_file() or entry.get("sha256") != sha256_file(path):
        return False
    return revision is None or revision in (entry.get("revision"), entry.get("resolved_revision"))


def license_line(source: Source) -> str:
    if not source.available:
        return f"{source.name}: no public source ({source.license}): {source.reason}"
    return f"{source.name}: license: {source.license} -- {source.title}, {source.location()}"


def fetch(names: Iterable[str], out_dir: str | os.PathLike, revision: str | None = None, force: bool = False,
          hub_cache: str | os.PathLike | None = None, downloader: Downloader | None = None,
          stream: TextIO | None = None) -> FetchResult:
    """Fetch the named sets into ``out_dir`` (see the module docstring).

    Args:
        names: registry names (:data:`meds3.data.sources.SOURCES`).
        out_dir: where ``<name>.jsonl`` and ``manifest.json`` go.
        revision: Hugging Face revision or GitHub commit for every named set (default: the
            registry's pin).
        force: fetch again even when the output is up to date.
        hub_cache: Hugging Face cache folder (read first, filled by downloads).
        downloader: ``(source, revision, hub_cache) -> Download`` (tests inject one).
        stream: where progress and license lines go (default stdout).

    Returns:
        A :class:`FetchResult`; unknown names raise KeyError before anything is downloaded.
    """
    stream = stream or sys.stdout
    download = downloader or default_downloader
    sources = [get_source(n) for n in names]
    out = Path(out_dir)
    result = FetchResult()
    for source in sources:
        print(license_line(source), file=stream, flush=True)
        if not source.available:
            result.unavailable.append(source.name)
            continue
        rev = revision or source.revision
        if not force and up_to_date(out, source.name, rev):
            print(f"{source.name}: up to date in {out / (source.name + '.jsonl')} (--force fetches it again)",
                  file=stream)
            result.skipped.append(source.name)
            continue
        got = None
        try:
            got = download(source, rev, hub_cache)
            rows, problems = normalize(source, got)
            if not rows:
                raise FetchError(f"{source.name}: no question could be read from {got.url}"
                                 + (f" (first problem: {problems[0]})" if problems else ""))
        except FetchError as exc:
            print(f"FAIL {exc}", file=stream)
            result.failed[source.name] = str(exc)
            continue
        except Exception as exc:  # a bad file: name the set and where it came from
            message = f"{source.name}: {type(exc).__name__}: {exc} (from {', '.join(source.urls(rev))})"
            print(f"FAIL {message}", file=stream)
            result.failed[source.name] = message
            continue
        finally:
            if got is not None and got.temporary is not None:
                shutil.rmtree(got.temporary, ignore_errors=True)
        path = out / f"{source.name}.jsonl"
        with atomic_open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        manifest = read_manifest(out)  # re-read: keep entries written meanwhile
        manifest["sets"][source.name] = {
            "file": path.name, "source": source.location(rev), "url": got.url, "revision": rev,
            "resolved_revision": got.revision, "license": source.license, "split": source.split,
            "questions": len(rows), "skipped_records": len(problems), "sha256": sha256_file(path),
            "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(out / MANIFEST, manifest)
        skipped = f", {len(problems)} malformed records skipped (first: {problems[0]})" if problems else ""
        print(f"ok   {source.name}: {len(rows)} questions -> {path} ({got.revision}){skipped}", file=stream)
        result.fetched.append(source.name)
    return result


def list_sources(stream: TextIO | None = None) -> None:
    """Print every known set: name, group, source, license, size and split (or why none)."""
    stream = stream or sys.stdout
    for s in SOURCES.values():
        if s.available:
            size = f"~{s.size}" if s.size else "?"
            line = f"{s.name:<24} {s.group:<5} {s.location()}  license: {s.license}  size: {size}  split: {s.split}"
            if s.note:
                line += f"  ({s.note})"
        else:
            line = f"{s.name:<24} {s.group:<5} none  license: {s.license}  no public source: {s.reason}"
        print(line, file=stream)
