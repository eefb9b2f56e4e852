"""Files an actor needs, shipped through Ray instead of a shared file system.

The driver packs the policy adapter and the PRM directory (every file, as bytes) once and puts
them in Ray's object store; each actor unpacks them into a local temporary folder and searches
with those paths. Every tree records the SHA-256 of the adapter it was searched with, so a
reader can check which policy grew it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

MAX_SHIPPED_BYTES = 2 * 1024 ** 3  # adapters are MBs; a merged model here would be a mistake


def pack_dir(path: str | os.PathLike) -> dict[str, bytes]:
    """Every file below ``path`` (relative name -> bytes).

    Raises:
        FileNotFoundError: ``path`` is not a directory.
        ValueError: more than :data:`MAX_SHIPPED_BYTES` of files.
    """
    from meds3.hub import resolve_hub

    root = resolve_hub(path)  # a local folder, or a Hub id's snapshot (meds3.hub)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory to ship to the Ray actors")
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    size = sum(len(b) for b in files.values())
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(f"{root} holds {size} bytes; ship an adapter, not a full model")
    return files


def files_sha256(files: dict[str, bytes]) -> str:
    """Content hash of packed files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def dir_sha256(path: Optional[str]) -> str:
    """:func:`files_sha256` of a directory; ``""`` for no adapter (the base model)."""
    return files_sha256(pack_dir(path)) if path else ""


def unpack_dir(files: dict[str, bytes], prefix: str) -> str:
    """Write packed files into a new local temporary folder; returns its path."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    for name, data in files.items():
        target = (root / name).resolve()
        if root.resolve() not in target.parents:
            raise ValueError(f"refusing to unpack {name!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return str(root)


@dataclasses.dataclass
class Shipment:
    """What the driver sends every actor: the packed adapter and PRM, and the adapter's hash."""

    adapter: Optional[dict[str, bytes]] = None
    prm: Optional[dict[str, bytes]] = None
    adapter_sha256: str = ""

    @classmethod
    def for_config(cls, config: Any) -> "Shipment":
        """Pack what ``config`` (a RolloutConfig) names on the driver's disk: the adapter, and
        the PRM when the search uses its prior."""
        return cls.for_paths(config.adapter, config.prm if config.search.prm_prior_weight > 0 else None)

    @classmethod
    def for_paths(cls, adapter: Optional[str], prm: Optional[str] = None) -> "Shipment":
        """Pack an adapter directory and a PRM directory (either may be None)."""
        packed = pack_dir(adapter) if adapter else None
        return cls(packed, pack_dir(prm) if prm else None, files_sha256(packed) if packed else "")

    def localize(self, config: Any) -> Any:
        """``config`` with the adapter and PRM paths pointing at local unpacked copies."""
        changes: dict[str, Any] = {}
        if self.adapter is not None:
            changes["adapter"] = unpack_dir(self.adapter, "meds3-adapter-")
        if self.prm is not None:
            changes["prm"] = unpack_dir(self.prm, "meds3-prm-")
        return dataclasses.replace(config, **changes) if changes else config
