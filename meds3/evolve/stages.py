"""Stage bookkeeping of the evolution loop: one directory and one manifest per stage.

A stage's ``manifest.json`` is written (atomically) only when the stage has finished; a
rerun skips every stage that has one and reruns the others. Stages that can resume
(rollout, eval) pick up what their directory already holds; training stages start over.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class StageResult:
    """What a stage left: its directory, its summary, whether it ran now or was skipped."""

    name: str
    directory: Path
    summary: dict[str, Any]
    skipped: bool
    seconds: float


def read_manifest(directory: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The manifest of a finished stage, or None when the stage has not finished."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s is unreadable; the stage will run again", path)
        return None


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)
    return directory / MANIFEST


def run_stage(name: str, directory: str | os.PathLike, work: Callable[[], dict[str, Any]],
              inputs: dict[str, Any] | None = None) -> StageResult:
    """Run ``work`` unless ``directory`` holds a finished manifest.

    Args:
        name: the stage's name (``iter1/rollout``), for logs and the manifest.
        directory: the stage's own output directory.
        work: runs the stage and returns its summary (JSON-serializable).
        inputs: what the stage read (paths, models), recorded in the manifest.

    Returns:
        The stage's result; ``skipped`` when it had finished in an earlier run.
    """
    directory = Path(directory)
    done = read_manifest(directory)
    if done is not None and done.get("status") == "done":
        logger.info("%s: finished in an earlier run, skipped (%s)", name, directory)
        return StageResult(name, directory, done.get("summary", {}), True, 0.0)
    logger.info("%s: running in %s", name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.time()
    summary = work()
    seconds = time.time() - start
    write_manifest(directory, {
        "stage": name, "status": "done", "inputs": inputs or {}, "summary": summary,
        "seconds": round(seconds, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    logger.info("%s: done in %.1f s", name, seconds)
    return StageResult(name, directory, summary, False, seconds)
