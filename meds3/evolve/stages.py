"""Stage bookkeeping of the evolution loop: one directory and one manifest per stage.

A stage's ``manifest.json`` is written (atomically) only when the stage has finished; a
rerun skips every stage that has one and reruns the others. Stages that can resume
(rollout, eval) pick up what their directory already holds; training stages start over.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from meds3.io import atomic_write_json

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class StageResult:
    """What a stage left.

    Attributes:
        name: the stage (``iter1/rollout``).
        directory: its folder.
        result: what the stage returned: a :class:`~meds3.results.RolloutResult`,
            :class:`~meds3.train.common.TrainResult` or :class:`~meds3.results.EvalResult` in the
            loop (a plain dict for a stage without a result class); read back from the manifest
            when the stage finished in an earlier run.
        skipped: the stage had finished in an earlier run and was not run again (a trainer
            that had nothing to train on says so in ``result.skipped``, a reason).
        seconds: how long it ran now (0 when skipped).
    """

    name: str
    directory: Path
    result: Any
    skipped: bool
    seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        """The result as the manifest stores it (``to_dict()``; a dict result as it is)."""
        return result_dict(self.result)


def result_dict(result: Any) -> dict[str, Any]:
    """A stage result as JSON data: its ``to_dict()``, or the dict itself.

    Raises:
        TypeError: neither a dict nor an object with ``to_dict``.
    """
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_dict"):
        return result.to_dict()
    raise TypeError(f"a stage returns a dict or a result with to_dict(), got {type(result).__name__}")


def read_manifest(directory: str | os.PathLike) -> Optional[dict[str, Any]]:
    """A stage's manifest, or None when it has none (the stage has not finished).

    A manifest is written whole (atomically), so one that cannot be read was damaged from
    outside: that is an error to look at, not a reason to redo (or skip) the stage silently.

    Raises:
        DataError: a manifest that is not UTF-8, not JSON or not a JSON object (file and
            line named); delete it to run the stage again.
    """
    from meds3.data.errors import DataError

    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    hint = "; delete it to run the stage again"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, f"not UTF-8 text (binary or damaged){hint}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"line {exc.lineno}", f"not JSON ({exc.msg}){hint}") from exc
    if not isinstance(manifest, dict):
        raise DataError(str(path), "line 1", f"a manifest is a JSON object, got {type(manifest).__name__}{hint}")
    return manifest


def is_finished(manifest: Optional[dict[str, Any]]) -> bool:
    """Whether a manifest records a finished stage: status ``done`` and its summary (an object)."""
    return bool(manifest) and manifest.get("status") == "done" and isinstance(manifest.get("summary"), dict)


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (:func:`meds3.io.atomic_write_json`)."""
    return atomic_write_json(Path(directory) / MANIFEST, manifest, default=str)


def run_stage(name: str, directory: str | os.PathLike, work: Callable[[], Any],
              inputs: dict[str, Any] | None = None, fingerprint: dict[str, Any] | None = None,
              force: bool = False, read: Optional[Callable[[dict[str, Any]], Any]] = None) -> StageResult:
    """Run ``work`` unless ``directory`` holds a finished manifest made with the same settings.

    Args:
        name: the stage's name (``iter1/rollout``), for logs and the manifest.
        directory: the stage's own output directory.
        work: runs the stage and returns its result: an object with ``to_dict()`` (stored as
            the manifest's ``summary``) or a JSON-serializable dict.
        read: turns a finished manifest's ``summary`` back into the result (``from_dict``);
            None: the dict as stored.
        inputs: what the stage read (paths, models), recorded in the manifest.
        fingerprint: the settings that shape the stage's outputs, recorded in the manifest
            and compared with a finished stage's (a manifest without one is not compared).
        force: a finished stage with other settings is started afresh (its outputs moved to
            ``superseded-<time>/``) instead of refused.

    Returns:
        The stage's result; ``skipped`` when it had finished in an earlier run.

    Raises:
        ConfigError: the stage finished with other settings (differing keys named), without ``force``.
        DataError: a damaged manifest, or a summary ``read`` refuses (file and reason named).
    """
    from meds3.config import ConfigError
    from meds3.resume import mismatch_message, move_aside

    directory = Path(directory)
    done = read_manifest(directory)
    if is_finished(done):
        saved = done.get("fingerprint")
        message = (mismatch_message(directory, f"stage {name} finished", saved, fingerprint)
                   if isinstance(saved, dict) and fingerprint is not None else None)
        if message is None:
            logger.info("%s: finished in an earlier run, skipped (%s)", name, directory)
            return StageResult(name, directory, _read_summary(directory, done["summary"], read), True, 0.0)
        if not force:
            raise ConfigError(message)
        logger.warning("%s: finished with other settings (--force): old outputs moved to %s", name,
                       move_aside(directory))
    elif done is not None:
        logger.warning("%s: %s does not record a finished stage (no status 'done' with a summary); running it "
                       "again", name, directory / MANIFEST)
    logger.info("%s: running in %s", name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.time()
    result = work()
    if read is not None and isinstance(result, dict):  # a stage that returns its summary dict: typed as on resume
        result = read(result)
    seconds = time.time() - start
    write_manifest(directory, {
        "stage": name, "status": "done", "inputs": inputs or {}, "summary": result_dict(result),
        "fingerprint": fingerprint, "seconds": round(seconds, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    logger.info("%s: done in %.1f s", name, seconds)
    return StageResult(name, directory, result, False, seconds)


def _read_summary(directory: Path, summary: dict[str, Any], read: Optional[Callable[[dict[str, Any]], Any]]) -> Any:
    """A finished manifest's summary as the stage's result type."""
    from meds3.data.errors import DataError

    if read is None:
        return summary
    try:
        return read(summary)
    except (ValueError, TypeError) as exc:
        raise DataError(str(directory / MANIFEST), None, f"summary: {exc}; delete the manifest to run the stage "
                        "again") from exc
