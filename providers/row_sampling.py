"""Per-row sampling for merged generate calls: each row its own settings and its own RNG.

A merged call (providers/generate_batcher.py) holds rows of several searches. Hugging
Face's sampler draws every row from one global RNG with one set of settings, so
a seeded request's draws would depend on what it happened to be merged with.
Here a logits processor samples each row itself (temperature, top-k, top-p,
then an inverse-CDF draw with a uniform from the row's own generator) and leaves
only that token finite, so generate's greedy step takes it. A row's draws then
depend on its own seed and its own logits only (up to float rounding), whether
it runs alone or beside 31 other rows.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor


@dataclass(frozen=True)
class RowSettings:
    temperature: float  # 0 = greedy
    top_p: float
    top_k: int | None
    seed: int  # 64-bit, see row_seed


def row_seed(seed: int | None, index: int) -> int:
    """Row `index` of a request: a seed of its own (derived from the request's seed, so
    the K draws of one prefix differ), or a fresh random one when the request has none."""
    if seed is None:
        return secrets.randbits(64)
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class RowSampler(LogitsProcessor):
    def __init__(self, rows: list[RowSettings]):
        self.gens = [torch.Generator().manual_seed(r.seed) for r in rows]  # CPU: the same draws on any device
        self.temps = torch.tensor([[r.temperature if r.temperature > 0 else 1.0] for r in rows])  # (B, 1)
        self.greedy = torch.tensor([r.temperature <= 0 for r in rows])  # (B,)
        self.top_k = torch.tensor([r.top_k or 0 for r in rows])  # (B,) 0 = off
        self.top_p = torch.tensor([[r.top_p] for r in rows])  # (B, 1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # scores: (B, V) next-token logits
        dev = scores.device
        B, V = scores.shape
        logits = scores.float() / self.temps.to(dev)  # (B, V)
        k = self.top_k.clamp(max=V)
        if bool((k > 0).any()):
            kth = logits.topk(int(k.max()), dim=-1).values  # (B, kmax), descending
            thresh = kth.gather(1, (k.clamp(min=1) - 1).to(dev)[:, None])  # (B, 1)
            thresh = torch.where((k > 0).to(dev)[:, None], thresh, torch.full_like(thresh, -torch.inf))
            logits = logits.masked_fill(logits < thresh, -torch.inf)
        if bool((self.top_p < 1).any()):
            sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
            p = sorted_logits.softmax(dim=-1)
            before = p.cumsum(dim=-1) - p  # mass ranked above each token; the top token always stays
            drop_sorted = before >= self.top_p.to(dev)
            drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)  # (B, V) back in vocab order
            logits = logits.masked_fill(drop, -torch.inf)
        cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        u = torch.stack([torch.rand((), generator=g) for g in self.gens]).to(dev)  # (B,) one draw per row per step
        picked = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1).clamp(max=V - 1)  # (B,)
        picked = torch.where(self.greedy.to(dev), scores.argmax(dim=-1), picked)
        out = torch.full_like(scores, -torch.inf)
        return out.scatter(1, picked[:, None], 0.0)  # only the drawn token is left: greedy takes it
