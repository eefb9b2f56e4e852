"""Shared test fixtures."""

import functools
import os
from pathlib import Path

import pytest
from openai_server import openai_server  # noqa: F401 -- one vLLM server per session, shared by every module

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
# Modules whose tests start Ray themselves (a cluster, or a CLI run with --ray), not through ray_instance.
RAY_MODULES = {"test_rollout_ray.py", "test_eval_ray.py", "test_fault_ray.py", "test_rehearsal.py", "test_packaging.py"}


@functools.cache
def uses_vllm_fixtures(path: Path) -> bool:
    """Whether a test module names the session's vLLM fixtures (some reach them through
    ``request.getfixturevalue``, which ``item.fixturenames`` does not show)."""
    text = path.read_text(encoding="utf-8")
    return "tiny_vllm_engine" in text or "openai_server" in text


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """A test marked ``vllm`` skips where vLLM is not installed (``require_vllm``), so no test or
    fixture needs its own ``pytest.importorskip("vllm")``. Under ``pytest -n 2 --dist loadgroup``
    (pytest-xdist), the vLLM tests share one worker and the Ray tests another (``xdist_group``);
    without xdist the groups do nothing."""
    from testing_utils import require_vllm

    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(require_vllm)
        if "ray_instance" in item.fixturenames or item.path.name in RAY_MODULES:
            # why: under `pytest -n 2 --dist loadgroup` (pytest-xdist) one worker runs every Ray test: a second
            # Ray instance on the machine (the rehearsal's two-node cluster) was joined by the other tests'
            # ray.init and failed them and itself; the rehearsal's vLLM engines are its own, not the session's
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.get_closest_marker("vllm") is not None or uses_vllm_fixtures(item.path):
            # one worker holds the session's vLLM engines (the server's alone takes 7 GiB of RAM on a CPU)
            item.add_marker(pytest.mark.xdist_group("vllm"))


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
    """One local Ray instance (2 CPUs) per test module, shut down after it (a new one: ``address="local"``
    never joins another Ray running on the machine); actors find the
    tests' helper modules (scripted engines, factories) through PYTHONPATH. Yields its address."""
    ray = pytest.importorskip("ray")
    tests = Path(__file__).resolve().parent
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(tests), str(tests / "faults")])}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
