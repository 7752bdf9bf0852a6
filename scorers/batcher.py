"""Micro-batching of scorer rows across every in-flight search.

Searches submit rows and await their results. One worker task drains the
queue: rows that arrived while the previous forward pass ran are packed into
one padded batch per set of weights (up to a token budget), so 8 concurrent searches
cost about one forward pass per round instead of eight.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from w2s.proxy.core.config import ScorerConfig
from w2s.proxy.core.job_queue import JobQueue
from w2s.proxy.runtime.loading import LoadedModel
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.rows import Row, RowResult, forward_rows

log = logging.getLogger("w2s.scorer")


@dataclass
class BatcherStats:
    batches: int = 0
    rows: int = 0
    tokens: int = 0  # real tokens fed (what the scorer computed)
    padded_tokens: int = 0  # B x (P + N): what the device attended over
    seconds: float = 0.0  # forward-pass time in the model thread (waits excluded)
    batch_rows: Counter = field(default_factory=Counter)  # rows per forward pass -> count


@dataclass
class _Job:
    model: LoadedModel
    rows: list[Row]
    future: asyncio.Future


def _timed(fn, *args):
    """Run in the model thread: the time of the work itself, not of the wait for the thread."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


class RowBatcher(JobQueue[_Job]):
    task_name = "w2s-scorer-batcher"

    def __init__(self, pool: ModelPool, cfg: ScorerConfig):
        super().__init__()
        self.pool = pool
        self.cfg = cfg
        self.stats = BatcherStats()

    async def submit(self, model: LoadedModel, rows: list[Row]) -> list[RowResult]:
        if not rows:
            return []
        fut = asyncio.get_running_loop().create_future()
        self._put(_Job(model, rows, fut))
        return await fut

    async def _worker(self) -> None:
        jobs: list[_Job] = []
        try:
            while True:
                jobs = self._drain([await self._queue.get()])
                jobs = [j for j in jobs if not j.future.done()]  # cancelled searches drop out
                # Per set of weights, not per name: an adapter guide's two sides (and any
                # other user of its base) share one PeftModel and one forward pass.
                by_model: dict[int, list[_Job]] = {}
                for j in jobs:
                    by_model.setdefault(j.model.weights_id, []).append(j)
                for group in by_model.values():
                    try:
                        await self._run_group(group)
                    except Exception as e:  # a bad batch fails its searches, not the worker
                        log.exception("scorer batch failed")
                        for j in group:
                            if not j.future.done():
                                j.future.set_exception(e)
        except asyncio.CancelledError:
            self._abandon(jobs)
            raise

    async def _run_group(self, jobs: list[_Job]) -> None:
        model = jobs[0].model
        flat = [(ji, ri, r) for ji, j in enumerate(jobs) for ri, r in enumerate(j.rows)]
        # Similar shapes together: less padding.
        flat.sort(key=lambda t: (t[2].reuse, t[2].new_tokens))
        results: list[list[RowResult | None]] = [[None] * len(j.rows) for j in jobs]
        for batch in self._pack([t[2] for t in flat]):
            idx = flat[: len(batch)]
            flat = flat[len(batch):]
            out, busy = await self.pool.run(_timed, forward_rows, model.model, batch, model.tokenizer.pad_token_id or 0)
            st = self.stats
            st.seconds += busy
            st.batches += 1
            st.rows += len(batch)
            st.batch_rows[len(batch)] += 1
            st.tokens += sum(r.new_tokens for r in batch)
            st.padded_tokens += len(batch) * (max(r.reuse for r in batch) + max(r.new_tokens for r in batch))
            for (ji, ri, _), res in zip(idx, out):
                results[ji][ri] = res
        for j, res in zip(jobs, results):
            if not j.future.done():
                j.future.set_result(res)

    def _pack(self, rows: list[Row]):
        """Consecutive batches whose padded size stays within the budget."""
        batch: list[Row] = []
        P = N = 0
        for r in rows:
            p, n = max(P, r.reuse), max(N, r.new_tokens)
            if batch and ((len(batch) + 1) * (p + n) > self.cfg.max_batch_tokens
                          or len(batch) >= self.cfg.max_batch_rows):
                yield batch
                batch, p, n = [], r.reuse, r.new_tokens
            batch.append(r)
            P, N = p, n
        if batch:
            yield batch
