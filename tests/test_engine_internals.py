"""The transformers internals the transformers engine relies on, pinned: a transformers release
that changes them fails here, by name, before any generation test fails in a confusing way.

- ``meds3/engines/kv.py``: ``_SlotLayer`` subclasses ``cache_utils.DynamicLayer`` and replaces
  ``DynamicCache.layers`` so attention writes new keys/values straight into meds3's buffers.
- ``meds3/engines/fast_ops.py`` and ``invariant.py``: attention functions registered through
  ``AttentionInterface`` / ``AttentionMaskInterface`` and chosen by ``attn_implementation``.
- the decode loop passes ``logits_to_keep`` and ``position_ids`` to the model's forward.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from model_paths import model_path

from meds3.engines.kv import KVBatch, slot_cache
from meds3.engines.slots import SlotKV


def test_cache_layer_api_meds3_overrides_exists():
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache = DynamicCache()
    assert hasattr(cache, "layers"), "DynamicCache.layers is gone: meds3/engines/kv.py slot_cache needs a rewrite"
    assert hasattr(cache, "layer_class_to_replicate"), "DynamicCache.layer_class_to_replicate is gone (kv.py)"
    params = list(inspect.signature(DynamicLayer.update).parameters)
    assert params[:3] == ["self", "key_states", "value_states"], f"DynamicLayer.update signature changed: {params}"
    layer = DynamicLayer()
    for attr in ("keys", "values", "is_initialized"):
        assert hasattr(layer, attr), f"DynamicLayer.{attr} is gone (kv.py _SlotLayer sets it)"


def test_attention_registries_meds3_uses_exist():
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: F401
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask  # noqa: F401

    from meds3.engines import fast_ops, invariant

    assert fast_ops.NAME in AttentionInterface._global_mapping
    assert invariant.NAME in AttentionMaskInterface._global_mapping


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM

    from meds3.engines import fast_ops

    return AutoModelForCausalLM.from_pretrained(model_path("tiny-random-llama"), dtype=torch.float32,
                                                attn_implementation=fast_ops.NAME).eval()


@pytest.mark.parametrize("store_kind", ["batch", "slots"])
def test_forward_writes_into_meds3_buffers_and_matches_a_plain_forward(tiny, store_kind):
    """Prefill 5 tokens, then decode 1, through meds3's cache: the keys land in meds3's own
    buffers (no copy made by transformers) and the logits equal transformers' own cache's."""
    cfg = tiny.config
    heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    like = dict(n_layers=cfg.num_hidden_layers, heads=heads, head_dim=head_dim, dtype=torch.float32,
                device=torch.device("cpu"))
    ids = torch.tensor([[5, 17, 99, 3, 42, 7]])
    with torch.inference_mode():
        want = tiny(input_ids=ids).logits[0, -1]
        pre = KVBatch.empty(rows=1, capacity=8, **like)
        pre.mask[0, :5] = 1
        tiny(input_ids=ids[:, :5], position_ids=torch.arange(5)[None], attention_mask=pre.attention_mask(5),
             past_key_values=pre.as_cache(), use_cache=True, logits_to_keep=1)
        pre.length, pre.next_pos[0] = 5, 5
        store = pre
        if store_kind == "slots":
            store = SlotKV(like)
            store.place([2], pre, torch.tensor([0]))  # slot 2: slots 0-1 stay free
            store.open_column()
        else:
            store.mask[0, 5] = 1
        rows = store.rows
        buffer = store.keys[0]
        out = tiny(input_ids=torch.full((rows, 1), 7), position_ids=torch.full((rows, 1), 5),
                   attention_mask=store.attention_mask(1), past_key_values=slot_cache(store), use_cache=True,
                   logits_to_keep=1)
    row = 2 if store_kind == "slots" else 0
    assert store.keys[0] is buffer  # written in place
    assert bool(buffer[row, :, 5].abs().sum() > 0)  # the decoded token's keys are in meds3's buffer
    torch.testing.assert_close(out.logits[row, -1], want, rtol=1e-4, atol=1e-4)
