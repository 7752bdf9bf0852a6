"""The local upstream's prompt KV cache: prefill a long prompt once, in chunks, for every row and round.

Without it every row of every generate call re-reads the whole prompt: a CBS
answer is ~20 calls of w*k rows, so a 7k-token prompt costs ~20 forwards of
(rows x 7k) where one forward of 7k would do. Here:

  - the prompt's tokens are prefilled once (batch 1) in chunks of runtime/prefill.py's PREFILL_CHUNK,
    so no forward ever holds a (T x T) attention matrix per head: memory grows
    linearly in T;
  - the cache is kept (a few prompts, least recently used out) and copied per
    call, expanded over the call's rows; only each row's own suffix (the partial
    answer) is fed, left-padded *after* the shared prefix:

        input_ids  (B, P + S)  prefix | pads | suffix_b     (P cached, S = longest suffix)
        attention  (B, P + S)  1...1  | 0..0 | 1...1
        positions  from the mask (generate's cumsum), so each row's suffix continues at P.

Used only for prompts of SHARE_MIN tokens or more: shorter ones take the plain
left-padded call, whose seeded draws the committed benches recorded.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch

from w2s.proxy.runtime.prefill import prefill_cache

SHARE_MIN = 256  # shared prompt tokens from which the cache pays (and below which draws stay as recorded)
KEEP = 4  # prompts cached per sampler (concurrent searches on different prompts)


@dataclass
class Prefix:
    ids: tuple[int, ...]
    cache: object  # transformers DynamicCache for batch 1, len(ids) tokens


def shared_len(rows: list[list[int]], prompt_ids: list[int]) -> int:
    """Tokens every row shares with the prompt's own ids, leaving each row at least one token to feed.

    At most all but the prompt's last token: the first round's rows (prompt + "") and later rounds'
    (prompt + answer) then share one cache key, and an answer whose first token merges with the
    prompt's last one does not miss it."""
    n = min(len(prompt_ids) - 1, *(len(r) - 1 for r in rows))
    i = 0
    while i < n and all(r[i] == prompt_ids[i] for r in rows):
        i += 1
    return i


def prefill(model, ids: list[int], adapter: str | None = None) -> Prefix:
    """`ids` through the decoder in chunks, into one cache (no logits)."""
    return Prefix(tuple(ids), prefill_cache(model, ids, adapter))


class PrefixCache:
    """The last KEEP prompts' caches, on the model thread only."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._entries: OrderedDict[tuple[int, ...], Prefix] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, model, ids: list[int], adapter: str | None = None) -> Prefix:
        key = tuple(ids)
        got = self._entries.get(key)
        if got is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return got
        self.misses += 1
        got = prefill(model, ids, adapter)
        self._entries[key] = got
        while len(self._entries) > self.keep:
            self._entries.popitem(last=False)
        return got


def expanded(prefix: Prefix, rows: int):
    """A copy of the prefix's cache for `rows` rows (generate appends to it)."""
    cache = copy.deepcopy(prefix.cache)
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    return cache


def inputs(prefix_len: int, rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, P + S): the shared prefix, pads, then each row's suffix."""
    suffixes = [r[prefix_len:] for r in rows]
    S = max(len(s) for s in suffixes)
    B = len(rows)
    ids = torch.full((B, prefix_len + S), pad_id, dtype=torch.long)  # (B, P + S)
    mask = torch.zeros((B, prefix_len + S), dtype=torch.long)  # (B, P + S)
    ids[:, :prefix_len] = torch.tensor(rows[0][:prefix_len], dtype=torch.long)
    mask[:, :prefix_len] = 1
    for b, s in enumerate(suffixes):
        ids[b, prefix_len + S - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[b, prefix_len + S - len(s):] = 1
    return ids, mask
