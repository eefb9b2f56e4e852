"""The test suite's own layout under pytest-xdist (tests/conftest.py): which worker group holds
the session's vLLM engines and the Ray instances, and in what order the groups are handed out.
Checked on the items this session collected, so a new test that uses a session engine or Ray
outside its group fails here rather than as an out-of-memory or a joined cluster under ``-n 2``."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest


def group_of(item) -> str | None:
    marks = [m.args[0] for m in item.iter_markers("xdist_group")]
    assert len(marks) <= 1, (item.nodeid, marks)
    return marks[0] if marks else None


def test_the_session_vllm_engines_are_used_by_one_group_only(request):
    users = [item for item in request.session.items if set(conftest.SESSION_VLLM_FIXTURES) & set(item.fixturenames)]
    assert all(group_of(item) == "vllm" for item in users), \
        [(item.nodeid, group_of(item)) for item in users if group_of(item) != "vllm"]


def test_every_test_that_starts_ray_is_in_a_ray_group(request):
    for item in request.session.items:
        if "ray_instance" in item.fixturenames or item.path.name in conftest.RAY_MODULES:
            assert group_of(item) in {"ray", "rehearsal"}, item.nodeid
        if group_of(item) == "rehearsal":
            assert item.path.name == "test_rehearsal.py", item.nodeid


def test_groups_come_first_on_xdist_workers_and_no_file_is_split_otherwise(request):
    items = request.session.items
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # the worker writes the groups into the node ids (what the controller groups by), -n 2 alone too
        assert request.config.option.loadgroup
        assert all(item.nodeid.endswith("@" + group_of(item)) for item in items if group_of(item))
        ranks = [conftest.GROUP_ORDER.get(group_of(item), len(conftest.GROUP_ORDER)) for item in items]
        assert ranks == sorted(ranks)  # the groups in GROUP_ORDER, then the rest
        # in the Ray group, the modules that share the ray_instance Ray come first, in one run
        ray = [conftest.uses_ray_instance(item.path) for item in items if group_of(item) == "ray"]
        assert ray == sorted(ray, reverse=True)
    else:  # one process: each file's tests in one run, so its module fixtures are built once
        runs = [path for k, path in enumerate(item.path for item in items) if k == 0 or path != items[k - 1].path]
        assert len(runs) == len(set(runs))


def test_two_workers_distribute_by_group_in_collection_order():
    for given, want in (("load", "loadgroup"), ("loadgroup", "loadgroup"), ("loadfile", "loadfile"), ("no", "no")):
        config = SimpleNamespace(option=SimpleNamespace(dist=given, loadscopereorder=True))
        conftest.pytest_configure(config)
        assert (config.option.dist, config.option.loadscopereorder) == (want, False), given
    config = SimpleNamespace(option=SimpleNamespace())  # pytest without xdist: nothing to set
    conftest.pytest_configure(config)
    assert vars(config.option) == {}


def test_the_shared_ray_instance_ends_before_a_module_that_does_not_use_it(monkeypatch):
    """``ray_instance`` modules share one Ray; a test of another module (a ``--ray`` CLI run that
    starts its own) must not find it running, and none is left after the last test."""
    ray = pytest.importorskip("ray")
    shutdowns = []
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    monkeypatch.setattr(conftest, "_RAY", {"address": "127.0.0.1:1"})
    here = Path(__file__).resolve().parent
    sharing, other = (SimpleNamespace(path=here / name) for name in ("test_eval_ray.py", "test_packaging.py"))
    assert conftest.uses_ray_instance(sharing.path) and not conftest.uses_ray_instance(other.path)
    conftest.pytest_runtest_teardown(sharing, sharing)
    assert shutdowns == [] and conftest._RAY == {"address": "127.0.0.1:1"}
    conftest.pytest_runtest_teardown(sharing, other)
    assert shutdowns == [1] and conftest._RAY == {}
    conftest.pytest_runtest_teardown(other, sharing)  # nothing running: nothing to shut down
    monkeypatch.setattr(conftest, "_RAY", {"address": "127.0.0.1:1"})
    conftest.pytest_runtest_teardown(sharing, None)  # the last test of the run
    assert shutdowns == [1, 1] and conftest._RAY == {}
