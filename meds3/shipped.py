"""The seed files shipped with meds3, found from any working directory.

The repository keeps them in the top-level ``seed_data/``; a wheel installs the same files as
``meds3/seed_data/`` (``setup.py`` maps the folder into the package). Configs name them
``seed_data/<file>`` relative to the working directory, so they work as-is in a checkout.

The rule (:func:`resolve_shipped`): a relative path whose first part is ``seed_data`` and that
does not exist relative to the working directory is the shipped file of that name, when meds3
ships one; every other path is left as it is. A user's own ``seed_data/`` folder therefore always
wins over the shipped copy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

SEED_DIR = "seed_data"


def shipped_seed_dir() -> Optional[Path]:
    """The shipped seed folder: ``meds3/seed_data`` of an installed wheel, else the checkout's
    top-level ``seed_data/`` (an editable install); None when neither exists."""
    package = Path(__file__).resolve().parent
    for folder in (package / SEED_DIR, package.parent / SEED_DIR):
        if folder.is_dir():
            return folder
    return None


def resolve_shipped(path: str | os.PathLike) -> Path:
    """``path``, or the shipped seed file it names when it is a relative ``seed_data/...`` path
    missing from the working directory (see the module docstring). Never raises: a path that
    is nowhere is returned unchanged, for the caller's own "does not exist" error."""
    p = Path(path)
    if p.is_absolute() or not p.parts or p.parts[0] != SEED_DIR or p.exists():
        return p
    folder = shipped_seed_dir()
    candidate = folder.joinpath(*p.parts[1:]) if folder is not None else None
    if candidate is None or not candidate.exists():
        return p
    logger.debug("%s: not in the working directory; using the copy shipped with meds3, %s", p, candidate)
    return candidate
