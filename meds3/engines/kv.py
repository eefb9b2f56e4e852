"""KV-cache storage for the transformers backend.

``KVBatch`` holds the keys/values of a batch of rows in preallocated buffers
``[rows, kv_heads, capacity, head_dim]``, all rows right-aligned to one length ``L`` with an
attention mask marking the real positions (left padding, and holes where cached prefixes of
different lengths were stitched together). Decoding writes one column in place instead of
concatenating, which with transformers' ``DynamicCache`` would copy the whole cache every step
(at batch 64 x 600 tokens on SmolLM2 that copy costs more than the step's matmuls).

``PrefixStore`` keeps the KV of recently seen token sequences (prompts, and prompts plus their
generated tokens) under a byte budget, so a child node's prompt, which starts with its parent's
prompt and generated step, is only computed for its new tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [kv_heads, len, head_dim]


class _SlotLayer(DynamicLayer):
    """One layer's view into a KV store (``KVBatch`` or ``SlotKV``); ``update`` writes the new
    tokens' keys and values at the store's current length, in place.

    transformers internals relied on (pinned by tests/test_engine_internals.py, which fails on a
    transformers that changes them): ``DynamicCache.layers`` holds one layer object per decoder
    layer, each with ``keys``/``values``/``is_initialized``/``dtype``/``device``, and attention
    calls ``layer.update(key_states, value_states, ...)`` and uses the tensors it returns;
    ``layer_class_to_replicate = None`` stops the cache from appending layers of its own.
    These come from transformers' per-layer cache (huggingface/transformers#39106, 4.5x); run here
    on 5.19. Remove this class if transformers gains a cache that writes into caller-owned buffers.
    """

    def __init__(self, store, index: int):
        super().__init__()
        self.store, self.index = store, index
        self.is_initialized = True
        k, v = store.layer_views(index)
        self.dtype, self.device = k.dtype, k.device
        self.keys = k[:, :, : store.length]
        self.values = v[:, :, : store.length]

    def update(self, key_states, value_states, *args, **kwargs):
        start = self.store.length
        end = start + key_states.shape[-2]
        k, v = self.store.layer_views(self.index)
        k[:, :, start:end] = key_states
        v[:, :, start:end] = value_states
        self.keys, self.values = k[:, :, :end], v[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.store.length


def slot_cache(store) -> DynamicCache:
    """A ``DynamicCache`` whose layers read and write ``store``'s buffers in place.

    ``store`` has ``length``, ``layer_views(i) -> (keys, values)`` and one layer per model layer.
    """
    cache = DynamicCache()
    cache.layers = [_SlotLayer(store, i) for i in range(len(store.keys))]
    cache.layer_class_to_replicate = None
    return cache


class KVBatch:
    """KV buffers of a batch of rows sharing one right-aligned length.

    Attributes:
        keys, values: per layer ``[rows, kv_heads, capacity, head_dim]``.
        mask: ``[rows, capacity]`` long, 1 at real token positions.
        next_pos: ``[rows]`` position id of each row's next token.
        length: filled columns ``L``.
    """

    def __init__(self, keys, values, mask, next_pos, length: int):
        self.keys, self.values, self.mask = keys, values, mask
        self.next_pos, self.length = next_pos, length

    @classmethod
    def empty(cls, n_layers, rows, heads, head_dim, capacity, dtype, device) -> "KVBatch":
        """Zeroed buffers for ``rows`` rows of up to ``capacity`` tokens."""
        shape = (rows, heads, capacity, head_dim)
        keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        mask = torch.zeros(rows, capacity, dtype=torch.long, device=device)
        return cls(keys, values, mask, torch.zeros(rows, dtype=torch.long, device=device), 0)

    @classmethod
    def from_prefixes(cls, prefixes: Sequence[KV | None], lengths: Sequence[int], like: dict,
                      capacity: int) -> "KVBatch":
        """Rows whose first ``lengths[i]`` tokens' KV are known, right-aligned to their max.

        Args:
            prefixes: per row the cached KV (or ``None`` when ``lengths[i] == 0``).
            lengths: cached tokens per row.
            like: ``n_layers, heads, head_dim, dtype, device`` of the model.
            capacity: columns to allocate (at least ``max(lengths)``).
        """
        top = max(lengths) if lengths else 0
        batch = cls.empty(rows=len(lengths), capacity=max(capacity, top), **like)
        for row, (kv, n) in enumerate(zip(prefixes, lengths)):
            if n == 0:
                continue
            for layer, (k, v) in enumerate(kv):
                batch.keys[layer][row, :, top - n : top] = k[:, :n]
                batch.values[layer][row, :, top - n : top] = v[:, :n]
            batch.mask[row, top - n : top] = 1
            batch.next_pos[row] = n
        batch.length = top
        return batch

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def capacity(self) -> int:
        return self.mask.shape[1]

    def as_cache(self) -> DynamicCache:
        """A transformers cache object writing into these buffers."""
        return slot_cache(self)

    def layer_views(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of every row of ``layer``."""
        return self.keys[layer], self.values[layer]

    def attention_mask(self, q: int) -> torch.Tensor:
        """The mask over the cached columns and ``q`` new ones."""
        return self.mask[:, : self.length + q]

    def row_kv(self, row: int) -> KV:
        """Contiguous KV of the real tokens of ``row`` (holes and padding dropped)."""
        where = torch.nonzero(self.mask[row, : self.length]).flatten()
        # index_select: ~500x faster here than the equivalent k[row, :, where]
        return [(k[row].index_select(1, where), v[row].index_select(1, where))
                for k, v in zip(self.keys, self.values)]


def kv_bytes(kv: KV) -> int:
    """Bytes held by one cached sequence."""
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class PrefixStore:
    """LRU store of per-sequence KV, looked up by longest common token prefix.

    KV of a token at position ``p`` depends only on tokens ``0..p``, so any stored sequence
    sharing ``m`` leading tokens with a new prompt supplies those ``m`` positions exactly.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[np.ndarray, KV, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, namespace: str | None, ids: Sequence[int],
               max_len: int) -> tuple[KV | None, int]:
        """Longest cached prefix of ``ids`` (at most ``max_len`` tokens).

        Returns:
            ``(kv, m)``: KV whose first ``m`` positions are valid for ``ids``, or ``(None, 0)``.
        """
        if not self._entries or max_len <= 0:
            return None, 0
        query = np.asarray(ids[:max_len], dtype=np.int64)
        best_key, best = None, 0
        for key, (arr, _, _) in self._entries.items():
            if key[0] != namespace:
                continue
            n = min(len(arr), len(query))
            if n <= best:
                continue
            eq = arr[:n] == query[:n]
            m = n if eq.all() else int(np.argmin(eq))
            if m > best:
                best_key, best = key, m
        if best_key is None:
            return None, 0
        self._entries.move_to_end(best_key)
        return self._entries[best_key][1], best

    def insert(self, namespace: str | None, ids: Sequence[int], kv: KV) -> None:
        """Store the KV of ``ids``; drops stored sequences that are prefixes of it."""
        if self.max_bytes <= 0:
            return
        arr = np.asarray(ids, dtype=np.int64)
        size = kv_bytes(kv)
        if size > self.max_bytes:
            return
        for key in [k for k, (a, _, _) in self._entries.items() if k[0] == namespace
                    and len(a) <= len(arr) and np.array_equal(a, arr[: len(a)])]:
            self.bytes -= self._entries.pop(key)[2]
        self._entries[(namespace, arr.tobytes())] = (arr, kv, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, _, freed) = self._entries.popitem(last=False)
            self.bytes -= freed

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.bytes = 0
