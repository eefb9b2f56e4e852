"""Shared test fixtures."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance (2 CPUs) per test module, shut down after it; actors find the
    tests' helper modules (scripted engines, factories) through PYTHONPATH. Yields its address."""
    ray = pytest.importorskip("ray")
    tests = Path(__file__).resolve().parent
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(tests), str(tests / "faults")])}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
