"""Where vLLM's engine core runs (``multiprocessing``, meds3/engines/vllm_backend.py): in the
caller's process by default on a CPU, in its own process when asked (vLLM's default, what GPU
nodes run). Both give the same tokens, and closing the engine ends its process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from testing_utils import engine_core_processes

from meds3.engines import GenerationRequest, SamplingParams, build_engine

pytestmark = pytest.mark.vllm


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
    before = set(engine_core_processes())
    # the session engine's options, but the engine core in its own process
    engine = build_engine(tiny_model_path, backend="vllm", enable_lora=True, max_lora_rank=8, max_model_len=512,
                          gpu_memory_utilization=0.1, multiprocessing=True)
    try:
        started = set(engine_core_processes()) - before
        assert len(started) == 1 and engine.multiprocessing is True
        assert tokens(engine.generate(requests())) == want
    finally:
        engine.close()
    assert not started & set(engine_core_processes()), "the engine core outlived close()"
    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") is None  # the option did not leak into the process


IN_A_FRESH_PROCESS = """
from meds3.engines import GenerationRequest, SamplingParams, build_engine

def generated(engine):
    request = GenerationRequest(prompt="Step 1:", params=SamplingParams(temperature=0.0, max_new_tokens=4))
    return engine.generate([request])[0].samples[0].token_ids

if __name__ == "__main__":
    ballast = bytearray(b"\\x01") * (3 << 30)  # resident, not a lazy zero page
    first = build_engine({path!r}, backend="vllm", max_model_len=512, gpu_memory_utilization=0.1)
    assert first.multiprocessing is False, "the CPU default"
    second = build_engine({path!r}, backend="vllm", max_model_len=512, gpu_memory_utilization=0.1)
    assert second.multiprocessing is True, "a second live engine gets a process of its own"
    try:
        build_engine({path!r}, backend="vllm", max_model_len=512, multiprocessing=False)
    except ValueError as exc:
        assert "close it first" in str(exc)
    else:
        raise AssertionError("a second in-process engine was built")
    want = generated(first)
    second.close()
    assert generated(first) == want, "closing the other engine broke this one"
    first.close()
    again = build_engine({path!r}, backend="vllm", max_model_len=512, gpu_memory_utilization=0.1)
    assert again.multiprocessing is False and generated(again) == want, "a new engine after close"
    again.close()
    print("ok")
"""


@pytest.mark.slow  # three engine starts in a fresh process (~90 s on 2 cores)
def test_one_in_process_engine_at_a_time_whatever_the_process_already_holds(tiny_model_path, tmp_path):
    """In a process that already holds 3 GiB (vLLM's CPU worker counts the whole process's memory
    as the engine's; a tenth of this machine's RAM, 2.35 GiB, left no room for a KV cache until the
    backend added what the process holds), the first engine runs its core in the process, a second
    live one in its own, an explicit second in-process one is refused; closing the second leaves
    the first working (closing an in-process engine tore down the others' parallel state), and a
    new engine after the first is closed runs in the process again."""
    script = tmp_path / "engines.py"
    script.write_text(IN_A_FRESH_PROCESS.format(path=str(tiny_model_path)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-4000:]
