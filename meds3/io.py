"""Durable file writes: one atomic writer for every file meds3 produces, and JSON-lines repair.

Every file is written through :func:`atomic_open` (or its wrappers :func:`atomic_write_text`,
:func:`atomic_write_json`): the content goes to a temporary file in the same folder, which is
flushed, fsynced and renamed over the target, and then the folder is fsynced. A reader, or a
job killed at any moment, sees the old file or the new one, never half of one.

Symlinks: a symlink at the target path is *replaced* by the new file (rename semantics); its
target is never written. The temporary file is created with ``O_EXCL | O_NOFOLLOW``.

Temporary names carry their owner: ``.<name>.<pid>@<host>.<hex>.tmp``. A temporary file left
by a killed process is removed by :func:`remove_stale_temps` only once that process is gone
(same host, ``os.kill(pid, 0)`` fails); another host's or a live process's file is kept.

Appended JSON-lines files (evaluation responses) are written with :func:`append_lines` (flush and
fsync per chunk); a line torn by a crash is cut off by :func:`drop_torn_tail` before a resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

logger = logging.getLogger(__name__)

_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[^@/]+)\.[0-9a-f]{8}\.tmp$")


def hostname() -> str:
    """This machine's name as written in temporary and lock files."""
    return socket.gethostname() or "localhost"


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def temp_owner(name: str) -> tuple[int, str] | None:
    """``(pid, host)`` of a temporary file name made by :func:`atomic_open`, else None."""
    m = _TEMP_RE.match(name)
    return (int(m.group("pid")), m.group("host")) if m else None


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``directory`` whose writer is gone; returns those removed.

    Only names made by :func:`atomic_open` are considered; one is removed when it was made on
    this host by a process that no longer runs. Files of live processes, of other hosts and
    of unknown names are kept.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    host = hostname()
    for path in directory.glob(".*.tmp"):
        owner = temp_owner(path.name)
        if owner is None or owner[1] != host or process_alive(owner[0]):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        logger.info("removed %s: a temporary file of process %d, which is gone", path, owner[0])
        removed.append(path)
    return removed


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(target: Path) -> tuple[int, Path]:
    prefix = f".{target.name}.{os.getpid()}@{hostname()}."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.with_name(prefix + secrets.token_hex(4) + ".tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # umask permissions, like a plain open
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Args:
        path: the target (its folder is created if needed).
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding, newline: as for :func:`open` (text mode only).

    Yields:
        The open temporary file. On leaving the block it is flushed, fsynced and renamed over
        ``path``, and the folder is fsynced; on an error it is removed and ``path`` is untouched.

    Raises:
        ValueError: a mode other than ``"w"`` or ``"wb"``.
        OSError: the folder is not writable (``path`` untouched).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(target)
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # replaces a symlink at ``target`` itself, never its target
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, **dumps: Any) -> Path:
    """Write ``data`` as JSON (with a final newline) to ``path`` atomically; returns the path.

    Raises:
        TypeError, ValueError: ``data`` is not JSON-serializable (``path`` untouched).
    """
    text = json.dumps(data, indent=indent, **dumps) + "\n"  # serialized first: a bad value writes nothing
    return atomic_write_text(path, text)


def append_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Append lines (each given without its newline) to ``path`` and make them durable (fsync)."""
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def drop_torn_tail(path: str | os.PathLike) -> int:
    """Cut an unterminated last line (a write torn by a crash) off a JSON-lines file.

    Appends start on a fresh line afterwards. Logs a warning naming the file when it cuts.

    Returns:
        The number of bytes removed (0 when the file ends with a newline, is empty or is missing).
    """
    path = Path(path)
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep, block = 0, 1 << 16
        pos = size
        while pos > 0:  # scan back for the last newline
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    logger.warning("%s:%d: dropped an unterminated last line (%d bytes) left by an interrupted write; "
                   "its question is generated again", path, _line_count(path) + 1, size - keep)
    return size - keep


def _line_count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))


def atomic_write_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix); returns the path."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", **savefig)
    return path
