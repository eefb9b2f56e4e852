"""Two decode-time speedups for the transformers backend, measured on the 2-core CPU.

1. Grouped-query attention without copying the KV cache. transformers' ``sdpa`` attention
expands the key/value heads of grouped-query models (``repeat_kv``) whenever an attention mask
is given, which copies the whole KV cache at every decode step: with left padding there is
always a mask. SmolLM2 has 9 query heads per 3 KV
heads, and at batch 64 the copy cost as much as the attention itself. Here a decode step
folds the query heads of each KV group into the query-length axis instead, so one SDPA call
reads the cache in place. Prefill (several query tokens) uses transformers' ``sdpa``.

2. The output head computed in vocabulary chunks on CPU: ``[64, 576] x [576, 49152]`` runs at
~75 GFLOP/s as one GEMM and ~95 GFLOP/s as 2048-row chunks (the output block stays in cache).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "meds3_sdpa"


def grouped_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0,
                           scaling=None, is_causal=None, **kwargs):
    """transformers attention function; see the module docstring.

    Takes ``query [b, heads, q, d]``, ``key/value [b, kv_heads, L, d]``, a mask broadcastable
    to ``[b, 1, q, L]``; returns ``(output [b, q, heads, d], None)``.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1 or query.shape[2] != 1 or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    b, heads, _, d = query.shape
    folded = query.reshape(b, key.shape[1], groups, d)  # [b, kv_heads, group, d]
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # one query row; broadcast over the group
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(b, heads, 1, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


class ChunkedHead(torch.nn.Module):
    """Wraps an output ``Linear`` (sharing its weight) to compute logits in vocabulary chunks."""

    def __init__(self, linear: torch.nn.Linear, chunk: int = 2048):
        super().__init__()
        self.linear, self.chunk = linear, chunk

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., vocab]``; identical to ``linear(x)``."""
        if x.device.type != "cpu" or x.shape[:-1].numel() < 8:
            return self.linear(x)
        out = torch.cat([torch.nn.functional.linear(x, w)
                         for w in self.linear.weight.split(self.chunk)], dim=-1)
        return out if self.linear.bias is None else out + self.linear.bias


def chunk_output_head(model) -> None:
    """Replace ``model.lm_head`` (a plain Linear) with a :class:`ChunkedHead` in place."""
    head = getattr(model, "lm_head", None)
    if type(head) is torch.nn.Linear:
        model.lm_head = ChunkedHead(head)
