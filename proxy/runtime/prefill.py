"""A long prompt through a decoder in chunks, into one KV cache (no logits).

Shared by the local upstream's prompt cache (providers/prefix_cache.py) and the scorer's prompt entries
(scorers/rows.py prefill_entry): attention is (chunk x T) per head, never (T x T), so memory grows linearly
in the prompt's length.
"""
from __future__ import annotations

import torch

from w2s.proxy.runtime.adapters import per_row
from w2s.proxy.runtime.kvcompat import cache_kw

PREFILL_CHUNK = 512  # a prompt's tokens per forward


@torch.inference_mode()
def prefill_cache(model, ids: list[int], adapter: str | None = None):
    """`ids` (batch 1) through the model's decoder with `adapter`, PREFILL_CHUNK tokens a forward: a DynamicCache."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    decoder = model.get_decoder()
    with per_row(model, [adapter]):
        for s in range(0, len(ids), PREFILL_CHUNK):
            chunk = torch.tensor([ids[s: s + PREFILL_CHUNK]], device=model.device)  # (1, C)
            pos = torch.arange(s, s + chunk.shape[1], device=model.device)[None]  # (1, C)
            decoder(input_ids=chunk, position_ids=pos, use_cache=True, **cache_kw(cache))
    return cache
