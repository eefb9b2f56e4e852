"""Helpers for the tests that run Ray actors (the ``ray_instance`` fixture is in conftest.py)."""

from __future__ import annotations

import time

import pytest


def kill_first_worker(killed: list):
    """An ``on_unit_done`` hook: kill the actor that stored the first unit (its id goes into
    ``killed``), while it may still have a unit in flight, and wait until it is dead: ``ray.kill``
    only asks, and a call sent right after it may still be answered."""
    import ray

    def hook(job, result):
        if not killed:
            killed.append(result["worker"])
            handle = job.workers[result["worker"]].handle
            ray.kill(handle)
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    ray.get(handle.info.remote(), timeout=10)
                except ray.exceptions.RayActorError:
                    return
                time.sleep(0.05)
            pytest.fail("the killed actor kept answering")

    return hook
