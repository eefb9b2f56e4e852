"""Batch-invariant generation for the transformers backend: a request's tokens do not depend on
what else shares its batch.

Measured on this CPU (torch 2.13, float32), three things make a row's logits depend on its
neighbours, and each is removed here:

1. **Matrix products depend on the number of rows.** ``F.linear`` on ``[M, K]`` picks its
   kernel and blocking from ``M``: row 0's outputs changed in 1111 of 1536 places once M > 1.
   :func:`tile_linears` computes every linear layer in fixed tiles of :data:`TILE` rows (the last
   one zero-padded), one call per tile, so every call has the same shape whatever the batch;
   with that, every row was bit-identical for M = 1..256 and any row order (a batched
   ``matmul`` over tiles was not: its kernel changes with the tile count).
2. **Attention depends on the key length and on padding.** In a shared batch a row's keys are
   left-padded to the longest row, and SDPA's reductions group the keys by position, so the pad
   count changes the rounding. :func:`invariant_attention` runs SDPA per row over that row's own
   contiguous span of keys (a view, no copy), with the same shapes as if the row were alone.
3. **Prefix-cache hits** prefill only a prompt's suffix over cached keys, which rounds
   differently from prefilling the whole prompt (and which prompts are cached depends on what
   ran before). The engine turns its prefix store off in this mode.

The price is speed: smaller matrix products and one attention call per row and layer
(docs/benchmarks.md has the measured ratio).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "meds3_invariant"
TILE = 16  # rows per matrix-product call: every linear call has this many rows


def tiled_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed in fixed tiles of :data:`TILE` rows, so each row's
    result does not depend on the other rows or on how many there are."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    m = rows.shape[0]
    pad = (-m) % TILE
    if pad:
        rows = torch.cat([rows, rows.new_zeros(pad, rows.shape[1])])
    out = torch.cat([F.linear(rows[i:i + TILE], weight, bias) for i in range(0, rows.shape[0], TILE)])
    return out[:m].reshape(*shape[:-1], weight.shape[0])


def _tiled_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return tiled_linear(x, self.weight, self.bias)


def tile_linears(model: torch.nn.Module) -> int:
    """Make every ``nn.Linear`` of ``model`` (LoRA layers included) compute in fixed tiles;
    returns how many were changed. Applies to adapters loaded later too (see the engine)."""
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and getattr(module.forward, "__func__", None) is not _tiled_forward:
            module.forward = types.MethodType(_tiled_forward, module)
            count += 1
    return count


def _spans(mask: torch.Tensor | None, batch: int, kv_len: int) -> list[int]:
    """First attended key of each row (keys are a contiguous span ending at ``kv_len``)."""
    if mask is None:
        return [0] * batch
    last = mask[:, 0, -1, :] if mask.dim() == 4 else mask
    last = last if last.dtype == torch.bool else last == 0  # additive float masks: 0 where attended
    starts = []
    for i in range(batch):
        idx = torch.nonzero(last[i], as_tuple=False)
        start = int(idx[0]) if len(idx) else kv_len
        if len(idx) != kv_len - start:
            raise ValueError("batch-invariant attention needs each row's keys in one contiguous span")
        starts.append(start)
    return starts


def invariant_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                        **kwargs):
    """transformers attention function: SDPA per row over the row's own key span.

    Takes ``query [b, heads, q, d]``, ``key/value [b, kv_heads, L, d]``; the queries are the
    last ``q`` positions of the keys. Returns ``(output [b, q, heads, d], None)``; query
    positions before a row's span (padding) get zeros.
    """
    b, heads, q_len, d = query.shape
    kv_len = key.shape[2]
    out = query.new_zeros(b, heads, q_len, d)
    for i, start in enumerate(_spans(attention_mask, b, kv_len)):
        q_start = max(0, start - (kv_len - q_len))  # queries of pad positions attend to nothing
        qi = query[i:i + 1, :, q_start:]
        ki, vi = key[i:i + 1, :, start:], value[i:i + 1, :, start:]
        n_q, n_k = qi.shape[2], ki.shape[2]
        if n_q == 0 or n_k == 0:
            continue
        mask = None if n_q == 1 else torch.ones(n_q, n_k, dtype=torch.bool, device=query.device).tril(n_k - n_q)
        out[i:i + 1, :, q_start:] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scaling,
                                                                   enable_gqa=heads != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, invariant_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
