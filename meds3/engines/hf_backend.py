"""transformers backend: the embedded default, on CPU (float32) or CUDA (bfloat16).

Why a hand-written decode loop rather than ``model.generate``: ``generate`` prefills each of
the ``num_return_sequences`` copies of a prompt separately, pads every sample to the longest
one, keeps finished rows in the batch until the last one ends, and with ``DynamicCache``
concatenates the whole KV cache every step. The search sends many requests of very different
lengths (n=3 expansions that stop at "Step k:", n=k rollouts that run to the answer), so here:

- each distinct prompt is prefilled once and its KV rows copied for its ``n`` samples;
- the running rows' KV lives in fixed slots of preallocated buffers written in place
  (``slots.SlotKV``): a finished row frees its slot and a queued prompt takes it while the
  others keep decoding (continuous batching, ``scheduler.DecodeScheduler``), under a row cap
  and a KV-token budget, copying only the new row's KV;
- a prefix store (``kv.PrefixStore``) keeps the KV of recent prompts and of prompts plus their
  generated tokens, so a child node's prompt only computes its new tokens;
- every sample has its own seeded generator, so seeds do not depend on batch composition.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from meds3.engines import fast_ops
from meds3.engines.base import Engine, register_backend
from meds3.engines.kv import KVBatch, PrefixStore
from meds3.engines.models import resolve_model
from meds3.engines.sampling import StopChecker, sample_tokens
from meds3.engines.scheduler import DecodeScheduler, Row, Unit
from meds3.engines.slots import SlotKV
from meds3.engines.types import (
    GenerationRequest,
    GenerationResult,
    Sample,
    sample_seed,
)

logger = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class _Ticket:
    """A submitted request until :meth:`TransformersEngine.poll` returns it."""

    request: GenerationRequest
    prompt: list[int]
    samples: list[Sample | None]
    left: int  # samples still decoding
    computed: int = 0


@register_backend("transformers")
class TransformersEngine(Engine):
    """Batched generation with transformers models.

    Args:
        model: directory, alias or hub id (see ``resolve_model``), or a loaded
            ``PreTrainedModel`` (then ``tokenizer`` is required).
        tokenizer: tokenizer to use instead of the model directory's.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        dtype: default float32 on CPU, bfloat16 on CUDA.
        max_batch_size: most rows decoded together.
        kv_cache_mb: KV memory the running batch may use (default 4096 on CPU, 16384 on GPU).
        max_prefill_tokens: padded prompt tokens per prefill forward.
        prefix_cache_mb: memory of the prefix store across calls; 0 disables it.
        cache_generated: also store prompts plus generated tokens (children continue them).
        share_prefill: prefill each distinct prompt once for all its samples (off only to
            measure what sharing saves).
        seed: seeds the draws of requests that have no seed.
        attn_implementation: transformers attention kernel; the default is ``sdpa`` with
            grouped-query decoding that reads the KV cache in place (``fast_ops.py``).
        batch_invariant: a request's tokens do not depend on what else is in the batch (its
            neighbours, their number and lengths, rows finishing, a resume): linear layers in
            fixed row tiles, attention per row over its own keys, no prefix store
            (:mod:`meds3.engines.invariant`). Slower; off by default.
        admit_wait: decode steps queued prompts may wait so that several are admitted together
            (one prefill and one KV copy for all of them); 0 admits at once.
        trust_remote_code: run Python code shipped in the model's repository (custom model or
            tokenizer classes) when loading it; off by default, since that code runs with this
            process's rights. Passed to both the model and the tokenizer loading.
    """

    def __init__(self, model: Any, *, tokenizer: Any = None, device: str | None = None,
                 dtype: str | torch.dtype | None = None, max_batch_size: int = 64,
                 kv_cache_mb: int | None = None, max_prefill_tokens: int = 4096,
                 prefix_cache_mb: int = 1024, cache_generated: bool = True,
                 share_prefill: bool = True, seed: int = 0,
                 attn_implementation: str = fast_ops.NAME, trust_remote_code: bool = False,
                 batch_invariant: bool = False, admit_wait: int = 0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(dtype, str):
            dtype = _DTYPES[dtype]
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.batch_invariant = batch_invariant
        if batch_invariant:
            from meds3.engines import invariant

            attn_implementation = invariant.NAME
            prefix_cache_mb = 0  # a prefix-cache hit prefills a suffix: other rounding than the whole prompt
        if isinstance(model, (str, os.PathLike)):
            self.model_path = str(resolve_model(model))
            self.model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=self.dtype, attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code)
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
                self.model_path, trust_remote_code=trust_remote_code)
            if self.device.type == "cpu" and not batch_invariant:
                fast_ops.chunk_output_head(self.model)
        else:
            if tokenizer is None:
                raise ValueError("a loaded model needs tokenizer=")
            self.model, self.tokenizer = model, tokenizer
            self.model_path = str(getattr(model, "name_or_path", ""))
            if batch_invariant:
                self.model.set_attn_implementation(attn_implementation)
        self.model.to(self.device).eval()
        if batch_invariant:
            invariant.tile_linears(self.model)
        cfg = self.model.config.get_text_config()
        self._max_len = getattr(cfg, "max_position_embeddings", None)
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self._like = dict(n_layers=cfg.num_hidden_layers, heads=heads, head_dim=head_dim,
                          dtype=self.dtype, device=self.device)
        self.kv_bytes_per_token = 2 * cfg.num_hidden_layers * heads * head_dim * self.dtype.itemsize
        budget = kv_cache_mb or (16384 if self.device.type == "cuda" else 4096)
        self.max_batch_tokens = budget * 2**20 // self.kv_bytes_per_token
        self.max_batch_size, self.max_prefill_tokens = max_batch_size, max_prefill_tokens
        self.share_prefill, self.cache_generated = share_prefill, cache_generated
        self.prefix_store = PrefixStore(prefix_cache_mb * 2**20)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self._rng = random.Random(seed)
        self._adapters: dict[str, str] = {}
        self._active: str | None = None
        self._next_ticket = 0
        self._sched = DecodeScheduler(SlotKV(self._like), max_batch_size, self.max_batch_tokens, admit_wait)
        self._reset_stream()

    # ----------------------------------------------------------------- public
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Sample every request; see :meth:`Engine.generate`.

        Raises:
            RuntimeError: streamed requests (:meth:`submit`) are still pending.
        """
        if self._open:
            raise RuntimeError(f"generate() while {len(self._open)} streamed request(s) are pending; "
                               "poll() them first")
        start = time.perf_counter()
        tickets = self.submit(requests)
        done: dict[int, GenerationResult] = {}
        while len(done) < len(tickets):
            done.update(self.poll())
        results = [done[t] for t in tickets]
        generated = sum(r.generated_tokens for r in results)
        seconds = time.perf_counter() - start
        logger.debug("%d requests: %d prompt tokens computed, %d generated in %.1f s (%.1f tok/s)",
                     len(results), sum(r.prompt_tokens_computed for r in results), generated, seconds,
                     generated / max(seconds, 1e-9))
        return results

    def submit(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """Queue requests for the running decode loop; see :meth:`Engine.submit`."""
        requests = list(requests)
        prompts = [self._prompt_ids(r) for r in requests]  # every request checked before any is queued
        tickets = list(range(self._next_ticket, self._next_ticket + len(requests)))
        self._next_ticket += len(requests)
        for t, req, ids in zip(tickets, requests, prompts):
            self._open[t] = _Ticket(req, ids, [None] * req.n, left=req.n)
        self._sched.enqueue(self._plan(tickets, requests, prompts))
        return tickets

    def poll(self) -> list[tuple[int, GenerationResult]]:
        """Decode until a request finishes; see :meth:`Engine.poll`."""
        try:
            with torch.inference_mode():
                while not self._finished and self._sched.busy():
                    self._tick()
        except BaseException:
            self._reset_stream()
            raise
        out = [(t, self._result(t)) for t in self._finished]
        self._finished = []
        return out

    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`poll`."""
        return len(self._open)

    def _tick(self) -> None:
        """One step of the decode loop: seat the queued prompts that fit, then decode one token."""
        sched = self._sched
        if not sched.live():
            sched.reset()  # start afresh: stale free slots would widen the step
        units = sched.admissible()
        if units:
            self._activate(units[0].adapter)
            sched.kv.trim_if_wasteful()
            for pre, index, rows, logits in self._prefill(units):
                slots = sched.free_slots(len(rows))
                sched.kv.place(slots, pre, index)
                sched.seat(rows, slots)
                self._advance(slots, logits)
        if not sched.live():
            return
        sched.compact()
        live = sched.live()
        logits = self._step()
        self._advance(live, logits[live])

    def _reset_stream(self) -> None:
        """Forget every unfinished request (after an error inside the decode loop)."""
        with torch.inference_mode():  # the KV buffers were made in inference mode
            self._sched.reset(queue=True)
        self._open, self._finished = {}, []

    @property
    def admit_wait(self) -> int:
        """Decode steps queued prompts may wait to be admitted together (see ``scheduler``)."""
        return self._sched.admit_wait

    @admit_wait.setter
    def admit_wait(self, steps: int) -> None:
        self._sched.admit_wait = steps

    def _result(self, ticket: int) -> GenerationResult:
        t = self._open.pop(ticket)
        n = t.request.n
        return GenerationResult(
            request_id=t.request.request_id, prompt_token_ids=t.prompt, samples=t.samples,
            prompt_tokens=len(t.prompt), prompt_tokens_computed=t.computed,
            prompt_tokens_cached=n * len(t.prompt) - t.computed)

    # --------------------------------------------------------------- planning
    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        ids = request.prompt_token_ids
        if ids is None:
            ids = self.tokenizer.encode(request.prompt, add_special_tokens=False)
        if not ids:
            raise ValueError(f"request {request.request_id!r}: empty prompt")
        if self._max_len and len(ids) + request.params.max_new_tokens > self._max_len:
            raise ValueError(
                f"request {request.request_id!r}: prompt ({len(ids)} tokens) + max_new_tokens "
                f"({request.params.max_new_tokens}) exceeds the model context {self._max_len}")
        return list(ids)

    def _plan(self, tickets, requests, prompts) -> list[Unit]:
        """Group samples into prefill units: one per distinct (adapter, prompt)."""
        units: dict[Any, Unit] = {}
        for i, req, ids in zip(tickets, requests, prompts):
            seed = req.params.seed if req.params.seed is not None else self._rng.getrandbits(62)
            stop = StopChecker(self.tokenizer, req.params.stop) if req.params.stop else None
            for j in range(req.n):
                gen = torch.Generator(device=self.device).manual_seed(sample_seed(seed, j))
                row = Row(i, j, req.params, gen, stop, ids)
                key = (req.adapter, tuple(ids)) if self.share_prefill else (i, j)
                unit = units.setdefault(key, Unit(req.adapter, ids, i, []))
                unit.rows.append(row)
        out = []
        for unit in units.values():  # a unit never holds more rows than a batch
            for k in range(0, len(unit.rows), self.max_batch_size):
                out.append(Unit(unit.adapter, unit.ids, unit.owner,
                                 unit.rows[k : k + self.max_batch_size]))
        return out

    # ------------------------------------------------------------------ model
    def _prefill(self, units: list[Unit]):
        """Prefill the units' prompts (after prefix-store hits) in chunks of at most
        ``max_prefill_tokens`` padded tokens; yields ``(batch, index, rows, logits)`` per chunk,
        where row ``rows[i]`` samples from ``batch`` row ``index[i]`` with ``logits[i]``."""
        chunk: list[Unit] = []
        longest = 0
        for unit in units:
            if chunk and max(longest, len(unit.ids)) * (len(chunk) + 1) > self.max_prefill_tokens:
                yield self._prefill_chunk(chunk)
                chunk, longest = [], 0
            chunk.append(unit)
            longest = max(longest, len(unit.ids))
        if chunk:
            yield self._prefill_chunk(chunk)

    def _prefill_chunk(self, units: list[Unit]):
        hits = [self.prefix_store.lookup(u.adapter, u.ids, len(u.ids) - 1) for u in units]
        cached = [m for _, m in hits]
        suffix = [u.ids[m:] for u, m in zip(units, cached)]
        width = max(len(s) for s in suffix)
        pre = KVBatch.from_prefixes([kv for kv, _ in hits], cached, self._like,
                                    capacity=max(cached) + width)
        start = pre.length
        tokens = torch.full((len(units), width), self.pad_id, dtype=torch.long)
        pos = torch.zeros((len(units), width), dtype=torch.long)
        for i, (s, m) in enumerate(zip(suffix, cached)):
            tokens[i, width - len(s):] = torch.tensor(s)
            pos[i, width - len(s):] = torch.arange(m, m + len(s))
            pre.mask[i, start + width - len(s) : start + width] = 1
            self._open[units[i].owner].computed += len(s)
        logits = self._forward(pre, tokens, pos)
        pre.next_pos = torch.tensor([len(u.ids) for u in units], device=self.device)
        for i, u in enumerate(units):
            self.prefix_store.insert(u.adapter, u.ids, pre.row_kv(i))
        counts = torch.tensor([len(u.rows) for u in units])
        index = torch.repeat_interleave(torch.arange(len(units)), counts).to(self.device)
        rows = [r for u in units for r in u.rows]
        return pre, index, rows, logits[index]

    def _step(self) -> torch.Tensor:
        """Decode one token for every active slot (free slots compute a pad token)."""
        kv = self._sched.kv
        last = [r.ids[-1] if r is not None and not r.done else self.pad_id for r in self._sched.rows]
        tokens = torch.tensor(last, dtype=torch.long)[:, None]
        kv.open_column()
        logits = self._forward(kv, tokens, kv.next_pos[: kv.active, None])
        kv.next_pos[: kv.active] += 1
        return logits

    def _forward(self, batch: KVBatch | SlotKV, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Run ``tokens`` [rows, q] after the batch's cached columns; last-position logits."""
        q = tokens.shape[1]
        out = self.model(
            input_ids=tokens.to(self.device), position_ids=pos.to(self.device),
            attention_mask=batch.attention_mask(q), past_key_values=batch.as_cache(),
            use_cache=True, logits_to_keep=1)
        batch.length += q
        return out.logits[:, -1, :]

    # --------------------------------------------------------------- sampling
    def _advance(self, slots: list[int], logits: torch.Tensor) -> None:
        """Sample the next token of the rows in ``slots`` (``logits[i]`` is ``slots[i]``'s) and
        finish the rows that are done, freeing their slots."""
        if not slots:
            return
        sched = self._sched
        rows = [sched.rows[s] for s in slots]
        temp = torch.tensor([r.params.temperature for r in rows], device=logits.device)
        top_p = torch.tensor([r.params.top_p for r in rows], device=logits.device)
        toks = sample_tokens(logits, temp, top_p, [r.generator for r in rows])
        for slot, row, tok in zip(slots, rows, toks.tolist()):
            row.ids.append(tok)
            reason = None
            if row.stop is not None and row.stop.hit(row.ids):
                reason = "stop"
            elif tok in self.eos_ids and not row.params.ignore_eos:
                reason = "eos"
            elif len(row.ids) >= row.params.max_new_tokens:
                reason = "length"
            if reason is not None:
                row.done = True
                ticket = self._open[row.req]
                ticket.samples[row.index] = self._finish(row, reason)
                ticket.left -= 1
                if ticket.left == 0:
                    self._finished.append(row.req)
                if self.cache_generated and self.prefix_store.max_bytes > 0:
                    self.prefix_store.insert(sched.adapter, row.prompt + row.ids[:-1], sched.kv.row_kv(slot))
                sched.release(slot)

    def _finish(self, row: Row, reason: str) -> Sample:
        ids = row.ids[:-1] if reason == "eos" else row.ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        match = None
        if row.stop is not None:
            text, match = row.stop.finish(text, row.params.include_stop_str_in_output)
            reason = "stop" if match is not None else reason
        return Sample(text=text, token_ids=list(row.ids), finish_reason=reason, stop_reason=match)

    # --------------------------------------------------------------- adapters
    def _activate(self, adapter: str | None) -> None:
        """Route the forward passes through LoRA ``adapter`` (``None``: the base model)."""
        if adapter == self._active:
            return
        if adapter is not None and adapter not in self._adapters:
            from peft import PeftModel

            from meds3.hub import resolve_hub

            name = f"adapter{len(self._adapters)}"
            local = str(resolve_hub(adapter))  # a local folder, or a Hub id's snapshot (meds3.hub)
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(local, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, local, adapter_name=name)
            self.model.to(self.device).eval()
            if self.batch_invariant:
                from meds3.engines.invariant import tile_linears

                tile_linears(self.model)  # the adapter's LoRA layers too
            self._adapters[adapter] = name
        if self._adapters:
            if adapter is None:
                self.model.base_model.disable_adapter_layers()
            else:
                self.model.base_model.enable_adapter_layers()
                self.model.set_adapter(self._adapters[adapter])
        self._active = adapter


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids
