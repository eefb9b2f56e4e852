"""One job per output folder: an exclusive lock on ``<output_dir>/.meds3.lock``.

Rollout, evaluation, training and evolution take the lock of their output folder for the
whole job (:func:`output_lock`, or the :func:`locks_output` decorator). A second job on the
same folder fails at once with :class:`OutputLocked`, naming the holder's pid, host, command
and start time (written into the lock file). The lock is ``fcntl.flock`` on the file, so the
kernel drops it when the holder dies, even by SIGKILL; the file itself is left in place.

Nesting: the evolution loop runs its stages in subfolders of its own folder, each with its own
lock file, so they never wait on each other. Taking the lock of a folder the same thread
already holds is a no-op (a runner that calls another runner on the same folder is one
job); another thread or process is refused. On Ray the driver holds the lock; actors never
write into the folder.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from meds3.config import ConfigError
from meds3.io import hostname, remove_stale_temps

LOCK_FILE = ".meds3.lock"
F = TypeVar("F", bound=Callable[..., Any])

_held = threading.local()  # resolved lock path -> nesting depth, per thread


class OutputLocked(ConfigError):
    """Another job holds the output folder's lock; the message names its pid and command."""

    def __init__(self, directory: Path, holder: dict[str, Any]):
        self.directory = directory
        self.holder = holder
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        what = f"{holder.get('job', 'a meds3 job')} started {holder.get('started', '?')}"
        command = holder.get("command")
        super().__init__(f"{directory}: output folder is in use by {who} ({what}"
                         f"{f': {command}' if command else ''}); wait for it to end or choose another "
                         "output_dir")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0).decode("utf-8", "replace")
        holder = json.loads(raw)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # the holder has not written its line yet


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike, job: str) -> Iterator[Path]:
    """Hold the exclusive lock of ``directory`` (created if needed) for the ``with`` block.

    On taking it, temporary files left in the folder by dead processes are removed.

    Args:
        directory: the job's output folder.
        job: what runs (``rollout``, ``eval``...), written into the lock file for the message.

    Yields:
        The lock file's path.

    Raises:
        OutputLocked: another process (or thread) holds the lock.
        ConfigError: the lock file is a symlink or cannot be opened.
    """
    import fcntl

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    key = str(path.resolve())
    held: dict[str, int] = _held.__dict__.setdefault("paths", {})
    if held.get(key):
        held[key] += 1
        try:
            yield path
        finally:
            held[key] -= 1
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the output folder's lock file ({exc.strerror}); "
                          "it must be a plain file") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(folder, _read_holder(fd)) from None
        holder = {"pid": os.getpid(), "host": hostname(), "job": job,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        remove_stale_temps(folder)
        held[key] = 1
        try:
            yield path
        finally:
            held.pop(key, None)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def locks_output(job: str) -> Callable[[F], F]:
    """Decorator: run ``fn(config, ...)`` holding :func:`output_lock` of ``config.output_dir``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def locked(config: Any, *args: Any, **kwargs: Any) -> Any:
            with output_lock(config.output_dir, job):
                return fn(config, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap
