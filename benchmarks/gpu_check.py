"""One-command GPU check: decode throughput against the memory-bandwidth roofline, and the
cost of one LoRA policy step and one PRM step, on random-weight Llama shapes.

Run from the repository root, without installing the package (the device machine has torch,
transformers, peft and accelerate but no vLLM, Ray, ``datasets`` or network)::

    PYTHONPATH=. python benchmarks/gpu_check.py --out runs/gpu_check
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check   # CPU, tiny shapes

Method
------
Models are built from a ``transformers.LlamaConfig`` with random weights, allocated directly on
the device in bf16 (float32 on CPU): decode speed does not depend on the weights, and no
weights need to travel with the source tree. Shapes: ``1b`` (Llama-3.2-1B: hidden 2048, 16
layers, 32 heads, 8 KV heads, MLP 8192, vocabulary 128256, tied embeddings) and ``8b``
(Llama-3.1-8B: hidden 4096, 32 layers, 32/8 heads, MLP 14336, vocabulary 128256, untied).

1. **Memory bandwidth**: the best of several device-to-device copies of a large buffer, timed
   with CUDA events; bytes moved = 2 x size (read + write). Printed beside the vendor's figure
   when the device name is known (``SPEC_BANDWIDTH``).
2. **Decode**: for each shape and batch size, ``batch`` distinct random prompts of
   ``--prompt-tokens`` tokens, each sampled once for ``--new-tokens`` tokens with end-of-sequence
   ignored (``SamplingParams.ignore_eos`` in the meds3 engine, ``min_new_tokens`` in
   ``model.generate``), so every row runs to the cap; the generated tokens are counted from the
   results. Engines: ``meds3`` (``TransformersEngine`` with its default options and grouped
   decode attention) and ``hf_generate`` (stock ``model.generate``, sdpa, DynamicCache), same
   temperature, ``top_k`` off. ``top_p`` defaults to 1: random weights give near-flat
   distributions, so a nucleus would sort the whole vocabulary at every step, which a trained
   model's peaked distribution avoids. Decode tokens/s = ``batch x (N - 1) / (t(N) - t(1))``
   (the one-token run pays the same prefill, so the difference is decode only); each time is
   the best of ``--repeats`` runs on fresh prompts (nothing is served from the prefix cache).
   Roofline: a decode step must read every weight the step uses (all but the input embedding,
   unless it is tied to the output head) plus each row's KV cache, so
   ``roofline tokens/s = batch x bandwidth / (weight bytes + batch x context x KV bytes per
   token)`` with the mean context of the timed steps, ``prompt + N / 2``. Logits, sampling
   and activations are left out (64 rows of bf16 logits are 16 MB, 0.7 % of the 1b weights).
3. **Training**: one LoRA policy SFT step (r=16, alpha=32, causal LM loss on the response part)
   and one PRM step (r=64, alpha=128, the one-logit token-classification head, soft-label BCE
   at 8 step ends) on the ``8b`` shape, ``--seq-len`` tokens x ``--train-batch`` rows, with
   gradient checkpointing and bf16. They run meds3's own training path on an in-memory model:
   the configs' defaults (``PolicyTrainConfig``, ``PRMTrainConfig``), ``prepare_for_training``,
   ``lora_config``, ``training_arguments`` (bf16, non-reentrant checkpointing) and the
   transformers ``Trainer`` with ``collate_prm`` and ``prm_loss`` as ``fit_prm`` uses them. Only
   the model construction differs: ``fit_policy`` / ``fit_prm`` load ``from_pretrained`` from a
   path, here ``LlamaForCausalLM`` / ``LlamaForTokenClassification(num_labels=1)`` (what
   ``load_prm_base`` builds) come from the config. ``--train-steps`` optimizer steps run; the
   first pays for allocation and kernel selection, so step time is the best of the later ones.
   Peak memory is ``torch.cuda.max_memory_allocated`` over the run (weights included; the
   weights' bytes are recorded beside it). On CPU it is the process's resident set size sampled
   every few milliseconds from ``/proc/self/statm`` (``peak_memory_kind``), or null elsewhere.

Time guard: every measurement first checks the time left of ``--max-minutes`` (default 8)
against a reserve for its kind and is recorded as ``skipped`` when it would not fit; a CUDA
out-of-memory error is recorded as ``oom`` and any other failure as ``error`` with its message,
so one bad point never loses the rest. Output: ``gpu_check.json`` and ``gpu_check.md`` in
``--out``; the Markdown tables are also printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("gpu_check")
GIB = 2**30
ENGINES = ("meds3", "hf_generate")
TRAIN_KINDS = ("policy", "prm")
# Vendor peak memory bandwidth, bytes/s, by a substring of torch.cuda.get_device_name();
# first match wins, so the more specific names come first.
SPEC_BANDWIDTH = [
    ("GH200", None),  # HBM3 and HBM3e variants differ: no single figure
    ("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12), ("A100 80GB PCIe", 1.935e12), ("A100", 1.555e12),
    ("B200", 8.0e12), ("L40S", 0.864e12), ("A10G", 0.6e12), ("L4", 0.3e12),
    ("RTX 4090", 1.008e12),
]


# ------------------------------------------------------------------- plan and shapes
@dataclass(frozen=True)
class Shape:
    """A Llama architecture: enough to build a random model and count its bytes."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


SHAPES = {
    "1b": Shape("1b", 2048, 16, 32, 8, 8192, 128256, tied=True),
    "8b": Shape("8b", 4096, 32, 32, 8, 14336, 128256, tied=False),
}
DRY_SHAPES = {  # same names, shrunk: the dry run exercises every code path in seconds
    "1b": Shape("1b", 64, 2, 4, 2, 128, 1000, tied=True),
    "8b": Shape("8b", 96, 2, 4, 2, 192, 1000, tied=False),
}


@dataclass
class Plan:
    """What to measure and the time each kind of measurement reserves before it starts."""

    shapes: list[Shape]
    train_shape: Shape
    batches: list[int]
    new_tokens: int
    prompt_tokens: int
    seq_len: int
    train_batch: int
    train_steps: int
    repeats: int
    temperature: float
    top_p: float
    device: str
    dtype: str
    copy_bytes: int
    reserve_s: dict[str, float] = field(default_factory=dict)


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan for a GPU run, or the shrunk CPU one with ``--dry-run``."""
    if args.dry_run:
        return Plan(
            shapes=[DRY_SHAPES[s] for s in args.shapes], train_shape=DRY_SHAPES["8b"],
            batches=[1, 2, 4], new_tokens=8, prompt_tokens=16, seq_len=64, train_batch=1,
            train_steps=2, repeats=1, temperature=args.temperature, top_p=args.top_p,
            device="cpu", dtype="float32", copy_bytes=64 * 2**20,
            reserve_s={"build": 1, "decode": 1, "train": 2})
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run for the CPU check")
    return Plan(
        shapes=[SHAPES[s] for s in args.shapes], train_shape=SHAPES["8b"],
        batches=list(args.batches), new_tokens=args.new_tokens, prompt_tokens=args.prompt_tokens,
        seq_len=args.seq_len, train_batch=args.train_batch, train_steps=args.train_steps,
        repeats=args.repeats, temperature=args.temperature, top_p=args.top_p,
        device="cuda", dtype="bfloat16", copy_bytes=2 * GIB,
        reserve_s={"build": 20, "decode": 15, "train": 45})


# ----------------------------------------------------------------------- arithmetic
def count_params(shape: Shape) -> int:
    """Parameters of a Llama model of ``shape`` (tied embeddings counted once)."""
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    layer = 2 * h * h + 2 * h * kv + 3 * h * shape.intermediate + 2 * h  # attn, MLP, 2 norms
    head = 0 if shape.tied else shape.vocab * h
    return shape.vocab * h + shape.layers * layer + h + head


def weight_bytes_read(shape: Shape, itemsize: int) -> int:
    """Weight bytes one decode step reads: every parameter except the input embedding
    (only ``batch`` of its rows are gathered), which is read whole when it is the output head."""
    embed = 0 if shape.tied else shape.vocab * shape.hidden
    return (count_params(shape) - embed) * itemsize


def kv_bytes_per_token(shape: Shape, itemsize: int) -> int:
    """KV-cache bytes of one token: keys and values of every layer."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * itemsize


def roofline_tokens_per_s(batch: int, bandwidth: float, weight_bytes: float,
                          kv_per_token: float, context: float) -> float:
    """Decode tokens/s if each step only had to read its bytes at ``bandwidth`` (bytes/s).

    A step generates ``batch`` tokens and reads the weights once plus ``batch`` KV caches of
    ``context`` tokens each.
    """
    return batch * bandwidth / (weight_bytes + batch * context * kv_per_token)


def spec_bandwidth(device_name: str) -> float | None:
    """The vendor's memory bandwidth (bytes/s) for a known device name, else None."""
    for key, value in SPEC_BANDWIDTH:
        if key in device_name:
            return value
    return None


# -------------------------------------------------------------------------- timing
class Budget:
    """Wall-clock budget of the whole run, counted from ``start`` (a ``perf_counter`` time)."""

    def __init__(self, minutes: float, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.total = 60.0 * minutes

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, reserve_s: float) -> bool:
        """Whether ``reserve_s`` seconds are still left."""
        return self.total - self.elapsed() >= reserve_s


def process_start() -> float:
    """``perf_counter`` time at which this process started (Linux ``/proc``; now elsewhere),
    so the budget also counts the imports and CUDA start-up."""
    now = time.perf_counter()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        return now
    return now - max(0.0, age)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def failure(exc: BaseException) -> dict[str, str]:
    """Status and message of a failed measurement: ``oom`` for CUDA out-of-memory."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        logger.warning("out of memory: %s", str(exc).splitlines()[0][:200])
        return {"status": "oom", "error": str(exc).splitlines()[0][:300]}
    logger.error("measurement failed", exc_info=exc)
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}


def guarded(record: dict[str, Any], device: str, fn: Callable[[], dict[str, Any]]) -> dict:
    """Run ``fn`` into ``record``: its fields and status ``ok``, or ``oom`` / ``error``."""
    try:
        record.update(fn())
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one failed point must not lose the others
        record.update(failure(exc))
    free_memory(device)
    return record


def measure_bandwidth(device: str, nbytes: int, repeats: int = 5) -> float:
    """Best copy bandwidth (bytes/s, read + write) of an ``nbytes`` buffer on ``device``."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            seconds = begin.elapsed_time(end) / 1e3
        else:
            t = time.perf_counter()
            dst.copy_(src)
            seconds = time.perf_counter() - t
        best = min(best, seconds)
    del src, dst
    free_memory(device)
    return 2 * nbytes / best


class PeakMemory:
    """Peak memory inside a ``with`` block: CUDA's allocator peak, or on CPU the resident set
    size sampled from ``/proc/self/statm`` (None where that file does not exist)."""

    def __init__(self, device: str, interval_s: float = 0.002):
        self.device, self.interval_s = device, interval_s
        self.kind = "cuda_max_memory_allocated" if device == "cuda" else "cpu_rss_sampled"
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif os.path.exists("/proc/self/statm"):
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.kind = "unavailable"

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak or 0, _rss())

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = int(torch.cuda.max_memory_allocated())
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak or 0, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -------------------------------------------------------------------------- models
class IdTokenizer:
    """The few tokenizer members the meds3 engine uses, for models without a vocabulary file:
    token ids are their own text."""

    pad_token_id, eos_token_id, bos_token_id = 0, 2, 1

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(str(int(i)) for i in ids)


def llama_config(shape: Shape, max_positions: int):
    """A ``LlamaConfig`` of ``shape`` (one label, for the PRM head)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate, vocab_size=shape.vocab,
        tie_word_embeddings=shape.tied, max_position_embeddings=max_positions,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=1)


def build_model(shape: Shape, kind: str, device: str, dtype: str, max_positions: int = 8192):
    """A random-weight ``LlamaForCausalLM`` (``kind="causal"``) or one-logit
    ``LlamaForTokenClassification`` (``kind="token_cls"``), allocated on ``device``."""
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    cls = LlamaForCausalLM if kind == "causal" else LlamaForTokenClassification
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = cls(llama_config(shape, max_positions))
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------------------- decode
def random_prompts(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    """``[batch, length]`` distinct prompts of ordinary (non-special) token ids."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=gen)


def engine_runner(engine, plan: Plan) -> Callable[[torch.Tensor, int], int]:
    """A function generating ``new`` tokens per prompt with the meds3 engine; returns the
    generated tokens counted from the results."""
    from meds3.engines import GenerationRequest, SamplingParams

    def run(prompts: torch.Tensor, new: int) -> int:
        requests = [GenerationRequest(prompt_token_ids=row.tolist(), params=SamplingParams(
            temperature=plan.temperature, top_p=plan.top_p, max_new_tokens=new, seed=i,
            ignore_eos=True)) for i, row in enumerate(prompts)]
        return sum(r.generated_tokens for r in engine.generate(requests))

    return run


def generate_runner(model, plan: Plan) -> Callable[[torch.Tensor, int], int]:
    """The same with stock ``model.generate`` (its default cache)."""

    def run(prompts: torch.Tensor, new: int) -> int:
        ids = prompts.to(plan.device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                temperature=plan.temperature, top_p=plan.top_p, top_k=0, max_new_tokens=new,
                min_new_tokens=new, pad_token_id=0)
        return (out.shape[1] - ids.shape[1]) * ids.shape[0]

    return run


def attention_for(engine: str) -> str:
    """Attention kernel of each engine: meds3's grouped decode attention, or stock sdpa."""
    from meds3.engines import fast_ops

    return fast_ops.NAME if engine == "meds3" else "sdpa"


def time_decode(run: Callable[[torch.Tensor, int], int], batch: int, plan: Plan,
                vocab: int, seed: int) -> dict[str, Any]:
    """Best-of-repeats times of ``new_tokens`` and of one token; decode-only tokens/s."""
    full = one = float("inf")
    generated = 0
    for r in range(plan.repeats):
        for new in (plan.new_tokens, 1):
            prompts = random_prompts(batch, plan.prompt_tokens, vocab, seed + 1000 * r + new)
            sync(plan.device)
            t = time.perf_counter()
            count = run(prompts, new)
            sync(plan.device)
            seconds = time.perf_counter() - t
            if new == 1:
                one = min(one, seconds)
            else:
                full, generated = min(full, seconds), count
    decode = batch * (plan.new_tokens - 1) / (full - one) if full > one else None
    return {"generated_tokens": generated, "seconds": round(full, 4),
            "one_token_seconds": round(one, 4),
            "end_to_end_tokens_per_s": round(generated / full, 1),
            "decode_tokens_per_s": round(decode, 1) if decode else None}


def add_roofline(row: dict[str, Any], shape: Shape, plan: Plan, bandwidth: dict) -> None:
    """Roofline tokens/s at the measured (and spec) bandwidth and the shares reached."""
    itemsize = getattr(torch, plan.dtype).itemsize
    context = plan.prompt_tokens + plan.new_tokens / 2
    args = (weight_bytes_read(shape, itemsize), kv_bytes_per_token(shape, itemsize), context)
    for key, bw in (("", bandwidth["measured_bytes_per_s"]),
                    ("_spec", bandwidth["spec_bytes_per_s"])):
        roof = roofline_tokens_per_s(row["batch"], bw, *args) if bw else None
        row[f"roofline_tokens_per_s{key}"] = round(roof, 1) if roof else None
        speed = row.get("decode_tokens_per_s")
        row[f"roofline_share{key}"] = round(speed / roof, 4) if roof and speed else None


def decode_phase(plan: Plan, budget: Budget, bandwidth: dict) -> tuple[list[dict], dict]:
    """Every (shape, engine, batch) decode point, and per shape its parameter counts."""
    rows, shapes = [], {}
    for shape in plan.shapes:
        points = [{"shape": shape.name, "engine": e, "batch": b, "new_tokens": plan.new_tokens,
                   "prompt_tokens": plan.prompt_tokens, "status": "skipped"}
                  for e in ENGINES for b in plan.batches]
        rows += points
        shapes[shape.name] = shape_summary(shape, plan)
        if not budget.allows(plan.reserve_s["build"] + plan.reserve_s["decode"]):
            for point in points:
                point["reason"] = "time budget"
            continue
        try:
            model = build_model(shape, "causal", plan.device, plan.dtype)
        except Exception as exc:  # noqa: BLE001 - the other shapes and training still run
            for point in points:
                point.update(failure(exc))
            free_memory(plan.device)
            continue
        shapes[shape.name]["params_built"] = numel(model)
        decode_shape(model, shape, points, plan, budget, bandwidth)
        del model
        free_memory(plan.device)
    return rows, shapes


def decode_shape(model, shape: Shape, points: list[dict], plan: Plan, budget: Budget,
                 bandwidth: dict) -> None:
    """Measure ``points`` (one shape) with the meds3 engine and ``model.generate``."""
    from meds3.engines.hf_backend import TransformersEngine

    engine = TransformersEngine(model, tokenizer=IdTokenizer(), device=plan.device,
                                dtype=plan.dtype, max_batch_size=max(plan.batches))
    runners = {"meds3": engine_runner(engine, plan), "hf_generate": generate_runner(model, plan)}
    for name, run in runners.items():  # warm-up: kernels, allocator, cuBLAS handles
        model.set_attn_implementation(attention_for(name))
        guarded({}, plan.device, lambda run=run: {"tokens": run(
            random_prompts(2, plan.prompt_tokens, shape.vocab, 7), 4)})
    for seed, point in enumerate(points):
        if not budget.allows(plan.reserve_s["decode"]):
            point["reason"] = "time budget"
            continue
        model.set_attn_implementation(attention_for(point["engine"]))
        run = runners[point["engine"]]
        guarded(point, plan.device, lambda run=run, point=point, seed=seed: time_decode(
            run, point["batch"], plan, shape.vocab, 10_000 * (seed + 1)))
        if point["status"] == "ok":
            add_roofline(point, shape, plan, bandwidth)
        logger.info("decode %s", point)
    engine.prefix_store.clear()


def shape_summary(shape: Shape, plan: Plan) -> dict[str, Any]:
    itemsize = getattr(torch, plan.dtype).itemsize
    return dict(asdict(shape), params=count_params(shape),
                weight_bytes_read_per_step=weight_bytes_read(shape, itemsize),
                kv_bytes_per_token=kv_bytes_per_token(shape, itemsize))


# ------------------------------------------------------------------------ training
def policy_examples(n: int, length: int, vocab: int) -> list[dict[str, list[int]]]:
    """SFT rows: random ids, the loss on the last three quarters (the response)."""
    gen = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (length,), generator=gen).tolist()
        labels = [-100] * (length // 4) + ids[length // 4:]
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return rows


def prm_examples(n: int, length: int, vocab: int, steps: int = 8) -> list[dict[str, list]]:
    """PRM rows: random ids, a soft value label at ``steps`` evenly spaced step ends."""
    from meds3.train.labels import IGNORE_INDEX

    gen = torch.Generator().manual_seed(2)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (length,), generator=gen).tolist()
        labels = [float(IGNORE_INDEX)] * length
        for k in range(1, steps + 1):
            labels[k * (length - 1) // steps] = round(k / (steps + 1), 3)
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def stack_collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Equal-length rows to tensors (no padding needed)."""
    return {k: torch.tensor([f[k] for f in features]) for k in features[0]}


def step_timer(device: str) -> tuple[Any, list[float]]:
    """A ``TrainerCallback`` and the list it fills with each optimizer step's wall time
    (device synchronized at both ends)."""
    from transformers import TrainerCallback

    seconds: list[float] = []
    began = [0.0]

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            began[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            seconds.append(time.perf_counter() - began[0])

    return StepTimer(), seconds


@dataclass
class TrainJob:
    """What one trainer needs: meds3's config, the model, examples, collator and loss."""

    config: Any
    model: Any
    task_type: str
    examples: list[dict[str, list]]
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    loss: Callable[..., torch.Tensor] | None = None


def train_job(kind: str, plan: Plan) -> TrainJob:
    """The policy SFT job (``PolicyTrainConfig`` defaults) or the PRM job (``PRMTrainConfig``
    defaults, ``collate_prm``, ``prm_loss`` as ``fit_prm`` wires them) on a random model."""
    from meds3.train.policy import PolicyTrainConfig
    from meds3.train.prm import PRMTrainConfig, collate_prm, prm_loss

    shape, rows = plan.train_shape, plan.train_steps * plan.train_batch
    options = {"device": plan.device, "gradient_checkpointing": True,
               "batch_size": plan.train_batch, "max_steps": plan.train_steps,
               "max_length": plan.seq_len, "logging_steps": 1}
    positions = plan.seq_len + 64
    if kind == "policy":
        return TrainJob(PolicyTrainConfig(**options),
                        build_model(shape, "causal", plan.device, plan.dtype, positions),
                        "CAUSAL_LM", policy_examples(rows, plan.seq_len, shape.vocab),
                        stack_collate)
    config = PRMTrainConfig(**options)

    def loss(outputs, labels, num_items_in_batch=None):
        return prm_loss(outputs.logits, labels, config.loss, config.threshold, num_items_in_batch)

    return TrainJob(config, build_model(shape, "token_cls", plan.device, plan.dtype, positions),
                    "TOKEN_CLS", prm_examples(rows, plan.seq_len, shape.vocab),
                    lambda features: collate_prm(features, IdTokenizer.pad_token_id), loss)


def train_step(kind: str, plan: Plan) -> dict[str, Any]:
    """``plan.train_steps`` optimizer steps of the policy or PRM trainer on ``train_shape``:
    step times, tokens/s and peak memory."""
    from peft import get_peft_model
    from transformers import Trainer

    from meds3.train import common

    # what is still allocated before the model is built (a leak from an earlier phase shows here)
    before = int(torch.cuda.memory_allocated()) if plan.device == "cuda" else None
    job = train_job(kind, plan)
    weights = sum(p.numel() * p.element_size() for p in job.model.parameters())
    model = get_peft_model(common.prepare_for_training(job.model, job.config),
                           common.lora_config(job.config, job.task_type))
    callback, seconds = step_timer(plan.device)
    peak = PeakMemory(plan.device)
    with tempfile.TemporaryDirectory() as tmp:
        args = common.training_arguments(job.config, Path(tmp), progress=False)
        trainer = Trainer(model=model, args=args, train_dataset=job.examples,
                          data_collator=job.collate, compute_loss_func=job.loss,
                          callbacks=[callback])
        common.attach_logging(trainer, progress=False)
        with peak:
            trainer.train()
    step = min(seconds[1:] or seconds)  # the first step pays for allocation and autotuning
    return {"steps": len(seconds), "step_seconds": [round(t, 4) for t in seconds],
            "step_s": round(step, 4),
            "tokens_per_s": round(plan.train_batch * plan.seq_len / step, 1),
            "peak_memory_bytes": peak.peak, "peak_memory_kind": peak.kind,
            "weights_bytes": weights, "allocated_before_bytes": before,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "lora_r": job.config.r, "lora_alpha": job.config.alpha}


def train_phase(plan: Plan, budget: Budget) -> list[dict[str, Any]]:
    """The policy and PRM training measurements (each recorded, even when skipped)."""
    rows = []
    for kind in TRAIN_KINDS:
        row = {"kind": kind, "shape": plan.train_shape.name, "seq_len": plan.seq_len,
               "batch": plan.train_batch, "gradient_checkpointing": True, "dtype": plan.dtype,
               "status": "skipped"}
        rows.append(row)
        if not budget.allows(plan.reserve_s["train"]):
            row["reason"] = "time budget"
            continue
        guarded(row, plan.device, lambda kind=kind: train_step(kind, plan))
        logger.info("train %s", row)
    return rows


# -------------------------------------------------------------------------- report
def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


DECODE_HEADER = ("| shape | engine | batch | generated | decode tok/s | end-to-end tok/s "
                 "| roofline tok/s | % of roofline (measured) | % of roofline (spec) | status |")
TRAIN_HEADER = ("| training step | shape | seq len x batch | LoRA r/alpha | step s | tokens/s "
                "| peak memory GiB | weights GiB | status |")


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: header lines, a decode table and a training table."""
    meta, bw = report["meta"], report["bandwidth"]
    title = "# GPU check" + (" (dry run: CPU, tiny shapes)" if meta["dry_run"] else "")
    lines = [
        title, "",
        (f"device: {meta['device_name']}; torch {meta['torch']}, transformers "
         f"{meta['transformers']}, peft {meta['peft']}; {meta['dtype']}; "
         f"{meta['elapsed_s']} s of {meta['max_minutes']} min"),
        (f"memory bandwidth: measured {_fmt(bw['measured_bytes_per_s'], 1e12, 3)} TB/s "
         f"(device copy, read + write), spec {_fmt(bw['spec_bytes_per_s'], 1e12, 3)} TB/s"),
        "",
        (f"Decode: distinct random prompts of {meta['prompt_tokens']} tokens, "
         f"{meta['new_tokens']} new tokens each, EOS ignored; decode tok/s excludes prefill."),
        "", DECODE_HEADER, "|---" * 10 + "|",
    ]
    for r in report["decode"]:
        lines.append(
            f"| {r['shape']} | {r['engine']} | {r['batch']} | {r.get('generated_tokens', '-')} | "
            f"{_fmt(r.get('decode_tokens_per_s'))} | {_fmt(r.get('end_to_end_tokens_per_s'))} | "
            f"{_fmt(r.get('roofline_tokens_per_s'))} | {_fmt(r.get('roofline_share'), 0.01)} | "
            f"{_fmt(r.get('roofline_share_spec'), 0.01)} | {r['status']} |")
    lines += ["", TRAIN_HEADER, "|---" * 9 + "|"]
    for r in report["train"]:
        lines.append(
            f"| {r['kind']} | {r['shape']} | {r['seq_len']} x {r['batch']} | "
            f"{r.get('lora_r', '-')}/{r.get('lora_alpha', '-')} | {_fmt(r.get('step_s'), 1, 3)} | "
            f"{_fmt(r.get('tokens_per_s'))} | {_fmt(r.get('peak_memory_bytes'), GIB, 2)} | "
            f"{_fmt(r.get('weights_bytes'), GIB, 2)} | {r['status']} |")
    kinds = {r["peak_memory_kind"] for r in report["train"] if r.get("peak_memory_kind")}
    if kinds:
        lines += ["", f"Peak memory: {', '.join(sorted(kinds))}."]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    """Versions of the libraries the figures depend on."""
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def run(args: argparse.Namespace, started: float | None = None) -> dict[str, Any]:
    """Every phase under the time budget (counted from ``started``, default now); returns the
    report."""
    budget = Budget(args.max_minutes, started)
    plan = make_plan(args)
    name = device_name(plan.device)
    bandwidth = {"measured_bytes_per_s": None,
                 "spec_bytes_per_s": spec_bandwidth(name) if plan.device == "cuda" else None,
                 "copy_bytes": plan.copy_bytes, "status": "skipped",
                 "method": "best of 5 device copies; bytes moved = 2 x size (read + write)"}
    if budget.allows(1):
        guarded(bandwidth, plan.device, lambda: {"measured_bytes_per_s": round(
            measure_bandwidth(plan.device, plan.copy_bytes))})
    logger.info("bandwidth %s", bandwidth)
    decode, shapes = decode_phase(plan, budget, bandwidth)
    train = train_phase(plan, budget)
    meta = {"device_name": name, "dry_run": args.dry_run, "max_minutes": args.max_minutes,
            "elapsed_s": round(budget.elapsed(), 1), "device": plan.device, "dtype": plan.dtype,
            "new_tokens": plan.new_tokens, "prompt_tokens": plan.prompt_tokens,
            "batches": plan.batches, "repeats": plan.repeats, "temperature": plan.temperature,
            "top_p": plan.top_p, "train_steps": plan.train_steps, **versions()}
    return {"meta": meta, "bandwidth": bandwidth, "shapes": shapes, "decode": decode,
            "train": train}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/gpu_check", help="folder for gpu_check.json and .md")
    p.add_argument("--dry-run", action="store_true", help="CPU, float32, tiny shapes (< 1 min)")
    p.add_argument("--max-minutes", type=float, default=8.0, help="total time budget")
    p.add_argument("--shapes", nargs="+", default=["1b", "8b"], choices=sorted(SHAPES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="best of this many timings per point")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seq-len", type=int, default=2048, help="training tokens per row")
    p.add_argument("--train-batch", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=3,
                   help="optimizer steps; the first is warm-up")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """Run the check, write ``gpu_check.json`` and ``gpu_check.md`` into ``--out``, print the
    tables. ``started``: when the time budget began (default: now)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = run(args, started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (out / "gpu_check.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(started=process_start()))
