"""Shared test fixtures."""

import os
from pathlib import Path

import pytest
from openai_server import openai_server  # noqa: F401 -- one vLLM server per session, shared by every module

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """A test marked ``vllm`` skips where vLLM is not installed (``require_vllm``), so no test or
    fixture needs its own ``pytest.importorskip("vllm")``."""
    from testing_utils import require_vllm

    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(require_vllm)


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """tiny-random-llama's directory, resolved once per session; skips the tests that use it where the
    embedded models cannot be built (``testing_utils.require_tiny_model`` is the marker form)."""
    from model_paths import model_path

    return model_path("tiny-random-llama")


@pytest.fixture(scope="session")
def tiny_vllm_engine(tiny_model_path):
    """One vLLM engine on tiny-random-llama for every module that tests the vllm backend (each start
    costs 30 s or more on a CPU), configured for the widest use: LoRA adapters up to rank 8, a 512-token
    context. It outlives those modules, so it reserves a tenth of the RAM (the tiny model's KV cache
    needs far less) rather than the backend's CPU default of 0.3, beside the vLLM engines started later.
    Tests must not close it; a test marked ``vllm`` skips where vLLM is missing (see above)."""
    from meds3.engines import build_engine

    engine = build_engine(tiny_model_path, backend="vllm", enable_lora=True, max_lora_rank=8, max_model_len=512,
                          gpu_memory_utilization=0.1)
    yield engine
    engine.close()


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
