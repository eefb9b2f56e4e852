"""Resume checks: the settings that shape a job's outputs, saved in its folder, compared on a rerun.

A rollout folder keeps ``fingerprint.json``, an evaluation folder ``generation.json``, an
evolution stage its manifest's ``fingerprint``. A rerun whose settings differ is refused with a
:class:`~meds3.config.ConfigError` that names the differing keys, unless it is forced: then the
folder's old outputs are moved aside into ``<folder>/superseded-<time>/`` (nothing is deleted)
and the job starts afresh there.

Settings recorded by an older version lack keys added since; such a key is accepted and
recorded (there is nothing to compare it with).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from meds3.config import ConfigError

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
SUPERSEDED = "superseded-"
_KEEP = (".meds3.lock",)  # the folder's lock stays where the running job holds it

# Engine options that change speed or memory but not what is generated: left out of the keys,
# so a resume may tune them. Every other option (dtype, seed, attention kernel, ...) counts.
OUTPUT_NEUTRAL_ENGINE_OPTIONS = frozenset({
    "gpu_memory_utilization", "max_model_len", "enforce_eager", "multiprocessing", "cpu_offload_gb",
    "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "tensor_parallel_size",
    "max_batch_size", "kv_cache_mb", "max_prefill_tokens", "prefix_cache_mb", "cache_generated",
    "share_prefill", "device", "enable_lora", "max_lora_rank", "max_loras",
    # openai backend: where and how the server is reached, not what it generates
    "base_url", "api_key", "max_concurrency", "max_retries", "retry_backoff", "timeout", "load_adapters",
})


def engine_key(options: dict[str, Any]) -> dict[str, Any]:
    """The engine options that shape generated text (:data:`OUTPUT_NEUTRAL_ENGINE_OPTIONS` left out)."""
    return {k: v for k, v in sorted(options.items()) if k not in OUTPUT_NEUTRAL_ENGINE_OPTIONS}


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, default=str))


# Free-form option dicts: a key set now but absent from the saved settings is a real change
# (an option that was left at its default), not a config field added by a later meds3.
_FREE_FORM = ("engine",)


def diff_keys(saved: Any, current: Any, prefix: str = "", strict: bool = False, defaults: Any = None) -> list[str]:
    """Dotted keys whose values differ between two JSON-like values (sorted).

    A key that only ``current`` has was not recorded by an older meds3 (a config field added
    since): at the top level it is not a difference (the rule for whole settings added to a
    key later); deeper, it is not a difference when its value is the field's default
    (``defaults``: the same structure built from default configs), since the saved outputs were
    made with that default. Inside the free-form option dicts (``engine``) and where ``strict``,
    every key counts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        out: list[str] = []
        for k in sorted(set(saved) | set(current)):
            if k not in current:
                out.append(f"{prefix}{k}")
            elif k not in saved:
                if strict or (prefix and not (k in defaults and defaults[k] == current[k])):
                    out.append(f"{prefix}{k}")
            else:
                out.extend(diff_keys(saved[k], current[k], f"{prefix}{k}.",
                                     strict or (not prefix and k in _FREE_FORM), defaults.get(k)))
        return out
    return [] if saved == current else [prefix.rstrip(".") or "(all)"]


def mismatch_message(where: Any, what: str, saved: dict[str, Any], current: dict[str, Any],
                     defaults: dict[str, Any] | None = None) -> str | None:
    """The refusal message for ``current`` against ``saved`` settings, or None when they agree.

    Keys an older version did not record are not differences at the top level, nor deeper at
    their default value (``defaults``; see :func:`diff_keys`).
    """
    current = plain(current)
    changed = diff_keys(saved, current, defaults=plain(defaults) if defaults is not None else None)
    if not changed:
        return None
    top = sorted({k.split(".")[0] for k in changed})
    detail = "; ".join(f"{k}: was {_value(saved, k)}, now {_value(current, k)}" for k in changed[:6])
    more = f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
    return (f"{where}: {what} with other settings ({', '.join(top)}): {detail}{more}. Use a new output_dir, or "
            f"rerun with --force (force=True) to start it afresh (old outputs are moved to {SUPERSEDED}<time>/)")


def _value(data: Any, dotted: str) -> str:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return "(not set)"
        data = data[part]
    text = json.dumps(data)
    return text if len(text) <= 60 else text[:57] + "..."


def read_settings(path: Path) -> dict[str, Any]:
    """Saved settings.

    Raises:
        DataError: the file is not a JSON object (damaged).
    """
    from meds3.data.errors import DataError

    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(str(path), None, f"saved settings are unreadable ({exc}); move the file away to "
                                         "record the current settings") from exc
    if not isinstance(saved, dict):
        raise DataError(str(path), None, f"saved settings must be a JSON object, got {type(saved).__name__}")
    return saved


def check_settings(path: str | os.PathLike, settings: dict[str, Any], what: str, force: bool = False,
                   defaults: dict[str, Any] | None = None) -> bool:
    """Record ``settings`` in ``path`` on a first run; on a rerun, refuse other settings.

    Args:
        path: the settings file inside the job's folder.
        settings: the settings that shape the folder's outputs (JSON-ready).
        what: what the saved outputs are, for the message (``trees in it were searched``).
        force: on a mismatch, move the folder's outputs aside (:func:`move_aside`) and record
            ``settings`` instead of refusing.
        defaults: ``settings`` as default configs give them: a field an older version did not
            record is accepted at its default (:func:`diff_keys`).

    Returns:
        True when the folder was started afresh (forced past a mismatch).

    Raises:
        ConfigError: saved settings differ (the differing keys named), without ``force``.
        DataError: the saved settings file is damaged.
    """
    from meds3.io import atomic_write_json

    path = Path(path)
    current = plain(settings)
    reset = False
    if path.exists():
        saved = read_settings(path)
        message = mismatch_message(path.parent, what, saved, current, defaults)
        if message and not force:
            raise ConfigError(message)
        if message:
            aside = move_aside(path.parent)
            logger.warning("%s: settings differ (--force): old outputs moved to %s; starting afresh",
                           path.parent, aside)
            reset = True
        elif set(current) - set(saved):
            logger.info("%s: recording settings not saved by an earlier version: %s", path,
                        ", ".join(sorted(set(current) - set(saved))))
        else:
            return False
    atomic_write_json(path, current)
    return reset


def move_aside(folder: str | os.PathLike) -> Path | None:
    """Move everything in ``folder`` (but its lock and earlier superseded folders) into a new
    ``superseded-<YYYYmmdd-HHMMSS>`` folder inside it; returns that folder (None: nothing to move)."""
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if p.name not in _KEEP and not p.name.startswith(SUPERSEDED)]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{SUPERSEDED}{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{SUPERSEDED}{stamp}-{n}"
    target.mkdir()
    for p in entries:
        os.replace(p, target / p.name)
    return target
