"""The guide pair: score(y) = beta * (log p_tuned(y|x) - log p_untuned(y|x)).

Each side renders the prompt with its own template (and, for a prompted pair,
its own system prompt), tokenizes prompt + response *text* itself, masks the
prompt at the common token prefix, and appends its EOS when the candidate is
finished. Sides sharing weights are one loaded model, and their rows go into
the same forward pass.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from proxy.core.config import GuideConfig, GuideSide
from proxy.core.rendering import Rendered, render
from proxy.core.types import Prompt, ScoreItem
from proxy.runtime.loading import LoadedModel
from proxy.runtime.pool import ModelPool
from scorers.batcher import RowBatcher
from scorers.rows import PastEntry, Row, RowResult, plan_reuse, supports_reuse


@dataclass
class _Side:
    cfg: GuideSide
    model: LoadedModel
    reuse: bool  # KV reuse possible for this model


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class GuidePair:
    def __init__(self, name: str, cfg: GuideConfig, pool: ModelPool, batcher: RowBatcher, incremental: bool = True):
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

    def bind(self) -> None:
        """Attach the loaded models (after ModelPool has loaded them)."""
        self.sides = []
        for side in (self.cfg.tuned, self.cfg.untuned):
            m = self.pool.get(side.model)
            self.sides.append(_Side(side, m, self.incremental and supports_reuse(m.model)))

    def session(self, prompt: Prompt) -> "PairSession":
        if not self.sides:
            self.bind()
        return PairSession(self, prompt)


class PairSession:
    """Scores the candidates of one search; keeps KV for the prompt and the last round."""

    def __init__(self, pair: GuidePair, prompt: Prompt):
        self.pair = pair
        self.tokens_computed = 0
        self._prefill = prompt.prefill
        self._rendered: list[Rendered] = []
        self._prompt_ids: list[list[int]] = []
        for s in pair.sides:
            r = render(prompt, s.model.tokenizer, s.cfg.template, s.cfg.system)
            self._rendered.append(r)
            self._prompt_ids.append(self._encode(s, r, prompt.prefill))
        self._entries: list[list[PastEntry]] = [[] for _ in pair.sides]  # per side: reusable prefixes
        self._prompt_entry: list[PastEntry | None] = [None for _ in pair.sides]

    @staticmethod
    def _encode(side: _Side, rendered: Rendered, response: str) -> list[int]:
        tok = side.model.tokenizer
        return tok(rendered.text + response, add_special_tokens=rendered.add_special_tokens)["input_ids"]

    def token_ids(self, side: int, item: ScoreItem) -> tuple[list[int], int]:
        """(ids, start): the side's tokens for prompt + response [+ EOS], and where the response starts."""
        s = self.pair.sides[side]
        # A prefill is shared by every candidate: it sits on the prompt side of the mask.
        ids = self._encode(s, self._rendered[side], self._prefill + item.text)
        if item.finished:
            ids = ids + [s.model.eos_id]
        # Mask at the common prefix: a merge at the prompt/response boundary
        # moves the boundary instead of scoring prompt text.
        start = max(1, common_prefix_len(self._prompt_ids[side], ids))
        return ids, start

    async def score(self, items: list[ScoreItem]) -> list[float]:
        pair = self.pair
        if not items:
            return []
        await self._ensure_prompt_cache()
        per_side_rows: list[list[Row]] = []
        starts: list[list[int]] = []
        for si, side in enumerate(pair.sides):
            rows, st = [], []
            for it in items:
                ids, start = self.token_ids(si, it)
                past, reuse = plan_reuse(ids, self._entries[si]) if side.reuse else (None, 0)
                rows.append(Row(ids, past, reuse, keep=side.reuse and not it.finished))
                st.append(start)
            per_side_rows.append(rows)
            starts.append(st)
        # One submission per model: a prompted pair's two sides share a batch.
        by_model: dict[str, list[tuple[int, int]]] = {}
        for si, side in enumerate(pair.sides):
            for ri in range(len(items)):
                by_model.setdefault(side.model.name, []).append((si, ri))
        groups = [(keys, [per_side_rows[si][ri] for si, ri in keys]) for keys in by_model.values()]
        outs = await asyncio.gather(*(pair.batcher.submit(pair.pool.get(name), rows)
                                      for name, (_, rows) in zip(by_model, groups)))
        results: dict[tuple[int, int], RowResult] = {}
        for (keys, rows), out in zip(groups, outs):
            self.tokens_computed += sum(r.new_tokens for r in rows)
            results.update(zip(keys, out))
        sums = []
        for si in range(len(pair.sides)):
            sums.append([float(results[(si, ri)].logps[starts[si][ri]:].sum()) for ri in range(len(items))])
            if pair.sides[si].reuse:
                # Keep this round's prefixes (next round extends the kept ones) and the prompt.
                fresh = [results[(si, ri)].entry for ri in range(len(items)) if results[(si, ri)].entry is not None]
                self._entries[si] = [e for e in [self._prompt_entry[si]] if e is not None] + fresh
        beta = pair.cfg.beta
        return [beta * (t - u) for t, u in zip(sums[0], sums[1])]

    async def _ensure_prompt_cache(self) -> None:
        """Run each side's prompt once; every candidate reuses its KV."""
        todo = [si for si, s in enumerate(self.pair.sides)
                if s.reuse and self._prompt_entry[si] is None and len(self._prompt_ids[si]) > 1]
        if not todo:
            return
        # Submitted together: a prompted pair's two prompts share one forward pass.
        outs = await asyncio.gather(*(
            self.pair.batcher.submit(self.pair.sides[si].model, [Row(list(self._prompt_ids[si]), keep=True)])
            for si in todo))
        for si, (res,) in zip(todo, outs):
            self.tokens_computed += len(self._prompt_ids[si])
            self._prompt_entry[si] = res.entry
            self._entries[si] = [res.entry]

    def close(self) -> None:
        self._entries = [[] for _ in self.pair.sides]
        self._prompt_entry = [None for _ in self.pair.sides]
