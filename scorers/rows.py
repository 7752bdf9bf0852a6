"""Batched log-prob forward passes over token rows that may reuse a cached prefix.

A row is one full token sequence (prompt + response [+ EOS]) of which the first
`reuse` tokens' keys/values are already known from a `PastEntry` (the prompt, or
the kept beam this candidate extends). Rows with different cached lengths share
one padded forward pass:

    past   (B, H, P, D)  left-padded to P = max reuse
    new    (B, N)        right-padded to N = max new tokens
    mask   (B, P + N)    zeros over both paddings
    pos    (B, N)        reuse_r + arange(N): true positions, so RoPE is exact

Each row names its adapter (None = base weights): an adapter guide's tuned and
untuned rows share the pass (proxy/runtime/adapters.py), and each row's cached
KV was computed with its own adapter, so reuse stays exact on both sides.

Pure torch + transformers; runs in the model worker thread.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from w2s.proxy.runtime.adapters import per_row
from w2s.proxy.runtime.heads import head_rewards
from w2s.proxy.runtime.kvcompat import cache_kw, out_cache
from w2s.proxy.runtime.prefill import prefill_cache

LOGIT_SLICE = 1024  # positions per lm_head slice: never materialise (B, N, V) logits


@dataclass
class PastEntry:
    ids: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (H, T, D)
    logps: torch.Tensor  # (T,) float64: log p(ids[i] | ids[:i]); logps[0] = 0


@dataclass
class Row:
    ids: list[int]
    past: PastEntry | None = None
    reuse: int = 0  # tokens of `past` reused; ids[:reuse] == past.ids[:reuse], reuse < len(ids)
    keep: bool = False  # return a PastEntry for this row (a beam that may be extended)
    adapter: str | None = None  # PEFT adapter this row runs with; None = the base weights
    # A reward model's scalar head (proxy/runtime/heads.py): the row's result is head(last token's hidden state)
    # instead of log-probs. Such rows share the pass with log-prob rows on the same base.
    head: Any = None

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.reuse


@dataclass
class RowResult:
    logps: torch.Tensor  # (T,) float64, as PastEntry.logps (zeros for a head row: its LM head never runs)
    entry: PastEntry | None
    reward: float | None = None  # a head row's scalar


def plan_reuse(ids: list[int], entries: list[PastEntry]) -> tuple[PastEntry | None, int]:
    """Pick the cached entry sharing the longest token prefix with `ids`.

    Reusing u tokens means feeding ids[u:]; the output at position u predicts
    ids[u+1], and ids[..u]'s log-probs come from the entry. So u = lcp - 1, and
    at least one token is always fed.
    """
    best, best_lcp = None, 0
    for e in entries:
        n = min(len(e.ids), len(ids))
        i = 0
        while i < n and e.ids[i] == ids[i]:
            i += 1
        if i > best_lcp:
            best, best_lcp = e, i
    u = min(best_lcp, len(ids)) - 1
    if best is None or u < 1:
        return None, 0
    return best, u


def supports_reuse(model) -> bool:
    """Only plain full-attention caches can be padded and stitched per row.

    Sliding-window layers (Gemma 3) keep a rolling cache; those models are
    scored by full recompute, which is always correct.
    """
    cfg = model.config
    types = getattr(cfg, "layer_types", None) or []
    return not any("sliding" in str(t) for t in types) and not getattr(cfg, "sliding_window", None)


@torch.inference_mode()
def forward_rows(model, rows: list[Row], pad_id: int) -> list[RowResult]:
    device = model.device
    P = max(r.reuse for r in rows)
    N = max(r.new_tokens for r in rows)
    input_ids, mask, pos = _inputs(rows, pad_id, P, N)
    cache = _stitched_cache(rows, P, N, device) if P > 0 else None
    keep = any(r.keep for r in rows)
    with per_row(model, [r.adapter for r in rows]):
        out = model.get_decoder()(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=pos.to(device),
            use_cache=keep,
            **cache_kw(cache),
        )
    hidden = out.last_hidden_state  # (B, N, E)
    lm = [b for b, r in enumerate(rows) if r.head is None]  # the rows that want log-probs
    new_lp = torch.zeros((len(rows), N), dtype=torch.float32)  # (B, N)
    if lm:
        new_lp[lm] = _target_logps(model, hidden[lm], _targets([rows[b] for b in lm], N).to(device))
    rewards = head_rewards(hidden, rows)
    new_cache = out_cache(out) if keep else None
    return [_row_result(r, b, new_lp, new_cache, P, rewards.get(b)) for b, r in enumerate(rows)]


def prefill_entry(model, ids: list[int], adapter: str | None = None) -> PastEntry:
    """A prompt's keys and values, prefilled in chunks with no lm_head: its log-probs are never scored (a
    response's start from the prompt's end), so they are zeros."""
    cache = prefill_cache(model, ids, adapter)
    kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]  # per layer (H, T, D)
    return PastEntry(tuple(ids), kv, torch.zeros(len(ids), dtype=torch.float64))


def _inputs(rows: list[Row], pad_id: int, P: int, N: int):
    """The new tokens right-padded, the mask over both paddings, the true positions."""
    B = len(rows)
    input_ids = torch.full((B, N), pad_id, dtype=torch.long)  # (B, N)
    mask = torch.zeros((B, P + N), dtype=torch.long)  # (B, P+N)
    pos = torch.zeros((B, N), dtype=torch.long)  # (B, N)
    for b, r in enumerate(rows):
        n = r.new_tokens
        input_ids[b, :n] = torch.tensor(r.ids[r.reuse:], dtype=torch.long)
        mask[b, P - r.reuse: P + n] = 1
        pos[b] = torch.arange(r.reuse, r.reuse + N)
    return input_ids, mask, pos


def _stitched_cache(rows: list[Row], P: int, N: int, device):
    """Each row's reused keys/values, left-padded to P, as one cache with room for the N new tokens."""
    from transformers import DynamicCache

    B = len(rows)
    layers = []
    ref = next(r.past for r in rows if r.past is not None).kv
    for li, (k0, v0) in enumerate(ref):
        H, _, D = k0.shape
        # Filled row by row: only each row's left padding is zeroed (masked, but must be finite), not the whole
        # buffer, which for a long prompt is most of the bytes a round moves.
        k = torch.empty((B, H, P + N, D), dtype=k0.dtype, device=device)  # (B, H, P+N, D)
        v = torch.empty((B, H, P + N, D), dtype=v0.dtype, device=device)
        for b, r in enumerate(rows):
            k[b, :, : P - r.reuse] = 0
            v[b, :, : P - r.reuse] = 0
            if r.reuse:
                k[b, :, P - r.reuse: P] = r.past.kv[li][0][:, : r.reuse]
                v[b, :, P - r.reuse: P] = r.past.kv[li][1][:, : r.reuse]
        layers.append((k, v))
    cache = DynamicCache(ddp_cache_data=[(k[:, :, :P], v[:, :, :P]) for k, v in layers])
    cache.layers = [_in_place_layer_class()(k, v, P) for k, v in layers]
    return cache


@functools.cache
def _in_place_layer_class():
    """A cache layer over (B, H, P+N, D) buffers whose first P positions are filled: `update` writes the pass's
    new keys/values in place and returns views. transformers' DynamicLayer concatenates instead, which copies
    the whole stitched past of every row once more per layer per pass (the largest share of a long prompt's
    round). A DynamicLayer subclass, so the cache's mask and length queries treat it as attention."""
    from transformers.cache_utils import DynamicLayer

    class InPlaceLayer(DynamicLayer):
        def __init__(self, k: torch.Tensor, v: torch.Tensor, P: int):  # no super().__init__: it resets keys
            self._k, self._v, self._n = k, v, P
            self.is_initialized, self.device = True, k.device
            self.keys, self.values = k[:, :, :P], v[:, :, :P]  # (B, H, P, D) views

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            n = key_states.shape[-2]  # key_states (B, H, n, D)
            self._k[:, :, self._n: self._n + n] = key_states
            self._v[:, :, self._n: self._n + n] = value_states
            self._n += n
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]
            return self.keys, self.values

    return InPlaceLayer


def _targets(rows: list[Row], N: int) -> torch.Tensor:
    targets = torch.full((len(rows), N), 0, dtype=torch.long)  # (B, N): token predicted at each position
    for b, r in enumerate(rows):
        nxt = r.ids[r.reuse + 1:]
        targets[b, : len(nxt)] = torch.tensor(nxt, dtype=torch.long)
    return targets


def _row_result(r: Row, b: int, new_lp: torch.Tensor, new_cache, P: int, reward: float | None = None) -> RowResult:
    """Row b's log-probs (cached prefix + new), and its keys/values when it is kept."""
    T = len(r.ids)
    lp = torch.zeros(T, dtype=torch.float64)  # (T,)
    if r.reuse:
        lp[: r.reuse + 1] = r.past.logps[: r.reuse + 1]
    lp[r.reuse + 1:] = new_lp[b, : T - r.reuse - 1].double()
    if not r.keep:
        return RowResult(lp, None, reward)
    # The row's reused part ends at P and its new tokens start there, so its keys/values are one slice: kept
    # as a view, not copied (a copy per kept row per layer was the other large share of a long prompt's round).
    # The view holds this pass's cache until the next round replaces the entries: the same bytes as the copies.
    kv = [(layer.keys[b][:, P - r.reuse: P + r.new_tokens], layer.values[b][:, P - r.reuse: P + r.new_tokens])
          for layer in new_cache.layers]  # per layer (H, reuse + new, D)
    return RowResult(lp, PastEntry(tuple(r.ids), kv, lp), reward)


def _target_logps(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(lm_head(hidden))[targets], sliced so (B, N, V) never exists."""
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    B, N, E = hidden.shape
    flat_h = hidden.reshape(B * N, E)  # (B*N, E)
    flat_t = targets.reshape(B * N)  # (B*N,)
    out = torch.empty(B * N, dtype=torch.float32)
    for s in range(0, B * N, LOGIT_SLICE):
        logits = head(flat_h[s: s + LOGIT_SLICE]).float()  # (S, V)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        # log p(target) as one fused op: about 40% less time than logsumexp + gather on
        # a (1024, 49152) slice on CPU (the vocabulary pass is the scorer's own cost over a forward).
        nll = F.cross_entropy(logits, flat_t[s: s + LOGIT_SLICE], reduction="none")  # (S,)
        out[s: s + LOGIT_SLICE] = (-nll).cpu()
    return out.reshape(B, N)
