"""Shared test fixtures."""

import functools
import os
from pathlib import Path

import pytest
from openai_server import openai_server  # noqa: F401 -- one vLLM server per session, shared by every module

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker gets its share of the cores unless told otherwise (set before any test
    # imports torch): two workers with two threads each on a 2-core machine oversubscribe it.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
# The session's vLLM fixtures (an engine and an OpenAI-compatible server on tiny-random-llama).
SESSION_VLLM_FIXTURES = ("tiny_vllm_engine", "openai_server")
# Modules whose tests start Ray themselves (a cluster, or a CLI run with --ray), not through ray_instance.
RAY_MODULES = {"test_rollout_ray.py", "test_eval_ray.py", "test_fault_ray.py", "test_rehearsal.py", "test_packaging.py"}


@functools.cache
def uses_vllm_fixtures(path: Path) -> bool:
    """Whether a test module names the session's vLLM fixtures (some reach them through
    ``request.getfixturevalue``, which ``item.fixturenames`` does not show)."""
    text = path.read_text(encoding="utf-8")
    return any(name in text for name in SESSION_VLLM_FIXTURES)


@functools.cache
def uses_ray_instance(path: Path) -> bool:
    """Whether a test module uses the ``ray_instance`` fixture."""
    return "ray_instance" in path.read_text(encoding="utf-8")


# The xdist groups, and the order their units are handed out under `pytest -n 2`, longest first, then
# the rest in collection order. xdist gives each worker one unit, and a second when the first has under
# three tests left: one worker takes the notebooks (3 tests, 7 minutes), then the vLLM group; the other
# the rehearsal (1 test, 3-5 minutes) with the Ray group queued behind it; both share the rest.
GROUP_ORDER = {"notebooks": 0, "rehearsal": 1, "ray": 2, "vllm": 3}


def xdist_group(item) -> str | None:
    """The pytest-xdist group a test runs in, or None for a test any worker may take.

    - ``rehearsal``: the two-node cluster rehearsal, on its own. Its cluster keeps its files in
      its own Ray temp dir, so the Ray tests of the other worker never join it (test_rehearsal.py).
    - ``ray``: every other test that starts Ray (``ray_instance`` users and :data:`RAY_MODULES`).
    - ``vllm``: tests marked ``vllm`` and modules that use the session's vLLM engines: one worker holds
      those engines (2.4 GiB of RAM each on a CPU), never both.
    - ``notebooks``: the example notebooks, in order on one worker (the later two reuse the
      quickstart's trees and PRM instead of growing their own).
    """
    if item.path.name == "test_rehearsal.py":
        return "rehearsal"
    if "ray_instance" in item.fixturenames or item.path.name in RAY_MODULES:
        return "ray"
    if item.get_closest_marker("vllm") is not None or uses_vllm_fixtures(item.path):
        return "vllm"
    if item.path.name == "test_notebooks.py":
        return "notebooks"
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """A test marked ``vllm`` skips where vLLM is not installed (``require_vllm``), so no test or
    fixture needs its own ``pytest.importorskip("vllm")``. Under ``pytest -n 2 --dist loadgroup``
    (pytest-xdist), each test gets its :func:`xdist_group` and the workers collect the groups in
    :data:`GROUP_ORDER` first; without xdist the groups do nothing and the order is the files'."""
    from testing_utils import require_vllm

    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(require_vllm)
        group = xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # set in xdist's workers, where collection happens
        # within a group, the modules that use ray_instance first: they share one Ray instance
        items.sort(key=lambda item: (GROUP_ORDER.get(xdist_group(item), len(GROUP_ORDER)),
                                     not uses_ray_instance(item.path)))


def pytest_configure(config):
    """Under xdist (``pytest -n 2``), always distribute by group, and hand the units out in
    collection order (``GROUP_ORDER`` first).

    - ``-n 2`` alone means ``--dist load``, which ignores the groups: both workers would start the
      session's vLLM engines and Ray instances. The suite needs its groups, so ``load`` becomes
      ``loadgroup``; another ``--dist`` the user names is kept.
    - xdist's default ``--loadscope-reorder`` hands out the largest groups first, which would start
      the rehearsal, a one-test group, only after them.
    """
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if getattr(config, "workerinput", {}).get("loadgroup"):  # a worker: see pytest_configure_node
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist does not know it
def pytest_configure_node(node):
    """Tell each xdist worker that the run is by group: a worker parses the command line itself
    and decides from ``--dist`` alone (xdist's ``setup_config``), so ``-n 2`` without ``--dist``
    would leave its tests ungrouped; then it writes no group into the node ids, which is what
    the controller groups by."""
    node.workerinput["loadgroup"] = node.config.getvalue("dist") == "loadgroup"


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


# The local Ray instance the ray_instance tests share ({"address": ...} while it runs).
_RAY: dict[str, str] = {}


@pytest.fixture
def ray_instance():
    """A local Ray instance (2 CPUs; a new one: ``address="local"`` never joins another Ray running
    on the machine), its address. Consecutive test modules that use this fixture share one instance
    (starting one costs 5-8 s); it is shut down before a test of a module that does not use it
    (:func:`pytest_runtest_teardown`), so those never see it. Actors find the tests' helper
    modules (scripted engines, factories) through PYTHONPATH."""
    ray = pytest.importorskip("ray")
    if "address" not in _RAY:
        tests = Path(__file__).resolve().parent
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(tests), str(tests / "faults")])}})
        _RAY["address"] = ray.get_runtime_context().gcs_address
    return _RAY["address"]


def pytest_runtest_teardown(item, nextitem):
    """Shut the shared Ray instance down after the last test, or before a module without
    ``ray_instance`` tests (a ``--ray`` CLI run there starts its own Ray)."""
    if "address" in _RAY and (nextitem is None or not uses_ray_instance(nextitem.path)):
        import ray

        ray.shutdown()
        _RAY.clear()
