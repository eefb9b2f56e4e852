"""Where vLLM's engine core runs (``multiprocessing``, meds3/engines/vllm_backend.py): in the
caller's process by default on a CPU, in its own process when asked (vLLM's default, what GPU
nodes run). Both give the same tokens, and closing the engine ends its process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meds3.engines import GenerationRequest, SamplingParams, build_engine

pytestmark = pytest.mark.vllm


def engine_core_processes() -> set[int]:
    """pids of the vLLM engine-core processes descended from this process."""
    parents, cores = {}, set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"EngineCore" in (entry / "cmdline").read_bytes():
                    cores.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue

    def descends(pid: int) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == os.getpid():
                return True
        return False

    return {pid for pid in cores if descends(pid)}


def requests() -> list[GenerationRequest]:
    return [GenerationRequest(prompt=p, params=SamplingParams(temperature=t, max_new_tokens=12, seed=s))
            for p, t, s in [("The patient is a 45-year-old man with", 0.0, None), ("Step 1:", 1.0, 7),
                            ("Hello there", 0.8, 3)]]


def tokens(results) -> list[list[list[int]]]:
    return [[s.token_ids for s in r.samples] for r in results]


def test_the_cpu_default_runs_the_engine_core_in_this_process(tiny_vllm_engine):
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the in-process default is the CPU's")
    assert tiny_vllm_engine.multiprocessing is False
    assert type(tiny_vllm_engine.llm.llm_engine.engine_core).__name__ == "InprocClient"


@pytest.mark.slow  # one more engine start in its own processes (~55 s on 2 cores)
def test_an_engine_core_in_its_own_process_gives_the_same_tokens_and_ends_with_close(tiny_vllm_engine,
                                                                                    tiny_model_path):
    want = tokens(tiny_vllm_engine.generate(requests()))
    before = engine_core_processes()
    # the session engine's options, but the engine core in its own process
    engine = build_engine(tiny_model_path, backend="vllm", enable_lora=True, max_lora_rank=8, max_model_len=512,
                          gpu_memory_utilization=0.1, multiprocessing=True)
    try:
        started = engine_core_processes() - before
        assert len(started) == 1 and engine.multiprocessing is True
        assert tokens(engine.generate(requests())) == want
    finally:
        engine.close()
    assert not started & engine_core_processes(), "the engine core outlived close()"
    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") is None  # the option did not leak into the process


@pytest.mark.slow  # an engine start (~20 s) beside 3 GiB of ballast
def test_an_in_process_engine_gets_its_share_whatever_the_process_already_holds(tiny_model_path):
    """vLLM's CPU worker counts the whole process's memory as the engine's: 3 GiB held by the
    caller left a tenth of this machine's RAM (2.35 GiB) no room for a KV cache until the backend
    added what the process holds to the share."""
    ballast = bytearray(b"\x01") * (3 << 30)  # resident, not a lazy zero page
    engine = build_engine(tiny_model_path, backend="vllm", max_model_len=512, gpu_memory_utilization=0.1,
                          multiprocessing=False)
    try:
        assert engine.generate(requests()[:1])[0].samples[0].token_ids
    finally:
        engine.close()
        del ballast
