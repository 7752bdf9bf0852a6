"""The guide pair: score(y) = beta * (log p_tuned(y|x) - log p_untuned(y|x)).

Each side renders the prompt with its own template (and, for a prompted pair,
its own system prompt), tokenizes prompt + response *text* itself, masks the
prompt at the common token prefix, and appends its EOS when the candidate is
finished (proxy/core/rendering.py ResponseEncoder, shared with the trainer).
Sides on the same weights (a prompted pair's one model, or an adapter pair's
base with the adapter on and off) are one loaded model, and their rows go into
the same forward pass.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from w2s.proxy.core.config import GuidePairConfig, GuideSide
from w2s.proxy.core.rendering import ResponseEncoder
from w2s.proxy.core.types import Prompt, ScoreItem
from w2s.proxy.runtime.loading import LoadedModel
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers import window
from w2s.scorers.batcher import RowBatcher
from w2s.scorers.rows import PastEntry, Row, RowResult, plan_reuse, prefill_entry, supports_reuse


@dataclass
class _Side:
    cfg: GuideSide
    model: LoadedModel
    reuse: bool  # KV reuse possible for this model
    # A reward model's scalar head (scorers/reward.py): this side's value per item is the reward,
    # not a log-prob sum. Its rows still share the pass with the other sides on its base.
    head: Any = None

    def encoder(self, prompt: Prompt) -> ResponseEncoder:
        m = self.model
        return ResponseEncoder(prompt, m.tokenizer, m.eos_id, self.cfg.template, self.cfg.system)


class GuidePair:
    def __init__(self, name: str, cfg: GuidePairConfig, pool: ModelPool, batcher: RowBatcher, incremental: bool = True):
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.batcher = batcher
        self.incremental = incremental and batcher.cfg.incremental
        self.sides: list[_Side] = []

    @property
    def model_names(self) -> set[str]:
        return {self.cfg.tuned.model, self.cfg.untuned.model}

    async def start(self) -> None:
        self.bind()

    def combine(self, values: list[float]) -> float:
        """The part score from this guide's sides' values (tuned, untuned log-prob sums)."""
        return self.cfg.beta * (values[0] - values[1])

    def bind(self) -> None:
        """Attach the loaded models (after ModelPool has loaded them)."""
        self.sides = []
        for side in (self.cfg.tuned, self.cfg.untuned):
            m = self.pool.get(side.model)
            self.sides.append(_Side(side, m, self.incremental and supports_reuse(m.model)))

    def session(self, prompt: Prompt, answer_tokens: int | None = None) -> "PairSession":
        """`answer_tokens`: the longest answer the search may write (upstream tokens), budgeted in the
        guide's window when it cuts the prompt to fit (scorers/window.py)."""
        if not self.sides:
            self.bind()
        return PairSession(self, prompt, answer_tokens)


class PairSession:
    """Scores the candidates of one search; keeps KV for the prompt and the last round."""

    def __init__(self, pair: GuidePair, prompt: Prompt, answer_tokens: int | None = None):
        self.pair = pair
        self.prompt = prompt
        self.tokens_computed = 0
        self.notes: list[str] = []  # what the search result says of this session (a cut prompt)
        self._windows = [s.model.context_tokens for s in pair.sides]
        self._enc = self._fit(window.reserve_for(answer_tokens))
        self._entries: list[list[PastEntry]] = [[] for _ in pair.sides]  # per side: reusable prefixes
        self._prompt_entry: list[PastEntry | None] = [None for _ in pair.sides]

    def token_ids(self, side: int, item: ScoreItem) -> tuple[list[int], int]:
        """(ids, start): the side's tokens for prompt + response [+ EOS], and where the response starts."""
        return self._enc[side].ids(item.text, item.finished)

    def _fit(self, reserve: int) -> list:
        """Each side's encoder for the prompt cut (if need be) to fit the guide's window, said in the notes."""
        encs, cut = window.fit(self.prompt, lambda p: [s.encoder(p) for s in self.pair.sides], self._windows,
                               reserve, self.pair.name)
        if cut:
            held = min(w for w in self._windows if w is not None)
            self.notes = [f"guide {self.pair.name!r}: the prompt's first {cut} characters were cut for scoring, "
                          f"to fit the guide's {held}-token context (both sides alike); the upstream read it whole"]
        return encs

    def _all_ids(self, items: list[ScoreItem]) -> dict[tuple[int, int], tuple[list[int], int]]:
        """(side, item) -> (ids, start); an answer that outgrew a side's window cuts the prompt further."""
        ids = {(si, ri): self.token_ids(si, it) for si in range(len(self._enc)) for ri, it in enumerate(items)}
        longest = max(len(v[0]) - len(self._enc[k[0]].prompt_ids) for k, v in ids.items())  # answer tokens
        if all(self._windows[si] is None or len(v[0]) <= self._windows[si] for (si, _), v in ids.items()):
            return ids
        self._enc = self._fit(2 * longest + window.MARGIN)  # room to grow: re-fits stay rare
        self.close()  # the caches hold the old cut's keys and values
        return {(si, ri): self.token_ids(si, it) for si in range(len(self._enc)) for ri, it in enumerate(items)}

    async def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        sums = await self.side_sums(items)  # per side, per item
        return [self.pair.combine(list(values)) for values in zip(*sums)]

    async def side_sums(self, items: list[ScoreItem]) -> list[list[float]]:
        """Per side, each item's response log-prob sum (a reward-model side: its reward): every side's rows
        in one submission per set of weights. The sides are `pair.sides` (a mixture passes the union of
        its parts' sides)."""
        pair = self.pair
        all_ids = self._all_ids(items)
        await self._ensure_prompt_cache()
        rows: dict[tuple[int, int], Row] = {}  # (side, item) -> its row
        starts: dict[tuple[int, int], int] = {}
        for si, side in enumerate(pair.sides):
            for ri, it in enumerate(items):
                ids, starts[si, ri] = all_ids[si, ri]
                past, reuse = plan_reuse(ids, self._entries[si]) if side.reuse else (None, 0)
                rows[si, ri] = Row(ids, past, reuse, keep=side.reuse and not it.finished, adapter=side.model.adapter,
                                   head=side.head)
        results = await self._run(rows)
        sums = []
        for si, side in enumerate(pair.sides):
            sums.append([results[si, ri].reward if side.head is not None
                         else float(results[si, ri].logps[starts[si, ri]:].sum()) for ri in range(len(items))])
            if pair.sides[si].reuse:
                # Keep this round's prefixes (next round extends the kept ones) and the prompt.
                fresh = [results[si, ri].entry for ri in range(len(items)) if results[si, ri].entry is not None]
                self._entries[si] = [e for e in [self._prompt_entry[si]] if e is not None] + fresh
        return sums

    async def _run(self, rows: dict[tuple, Row]) -> dict[tuple, RowResult]:
        """One submission per set of weights: a prompted pair's two sides, or an adapter
        pair's tuned and untuned rows, share a batch (and so one forward pass)."""
        groups: dict[int, list[tuple]] = {}
        for key in rows:
            groups.setdefault(self.pair.sides[key[0]].model.weights_id, []).append(key)
        keys = list(groups.values())
        outs = await asyncio.gather(*(
            self.pair.batcher.submit(self.pair.sides[ks[0][0]].model, [rows[k] for k in ks]) for ks in keys))
        results: dict[tuple, RowResult] = {}
        for ks, out in zip(keys, outs):
            self.tokens_computed += sum(rows[k].new_tokens for k in ks)
            results.update(zip(ks, out))
        return results

    async def _ensure_prompt_cache(self) -> None:
        """Run each side's prompt once, in chunks (rows.prefill_entry: never a T x T attention matrix);
        every candidate reuses its KV."""
        for si, side in enumerate(self.pair.sides):
            ids = list(self._enc[si].prompt_ids)
            if not side.reuse or self._prompt_entry[si] is not None or len(ids) <= 1:
                continue
            entry = await self.pair.pool.run(prefill_entry, side.model.model, ids, side.model.adapter)
            self.tokens_computed += len(ids)
            self._prompt_entry[si] = entry
            self._entries[si] = [entry]

    def close(self) -> None:
        self._entries = [[] for _ in self.pair.sides]
        self._prompt_entry = [None for _ in self.pair.sides]
