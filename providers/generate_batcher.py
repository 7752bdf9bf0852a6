"""Cross-search batching of the local sampler's generate calls.

Each search asks for one round at a time; with 8 searches in flight that is 8
small `generate` calls queued on the one model thread. On this kind of model a
batch of 32 rows costs little more than a batch of 4 (Gemma 270M on 2 CPU
cores: ~5 tok/s at batch 1, ~30 at batch 32), so requests that arrive while the
previous call runs are merged into one call, as the scorer's RowBatcher does.

Each row keeps its own sampling settings and its own seeded RNG
(providers/row_sampling.py), so a seeded request draws the same chunks alone or
merged, and its own token limit (a per-row stopping criterion), so a 10-token
chunk merged with a 50-token one still ends at 10. Only stop strings are one
setting per generate call: requests merge when their stop strings match.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from w2s.proxy.core.job_queue import JobQueue
from w2s.proxy.core.types import Chunk, SampleRequest

log = logging.getLogger("w2s.local")

# (requests) -> one list of chunks per request, run on the model thread.
RunBatch = Callable[[list[SampleRequest]], Awaitable[list[list[Chunk]]]]


@dataclass
class GenerateStats:
    calls: int = 0  # generate calls made
    requests: int = 0  # sample requests served
    rows: int = 0  # continuations generated
    batch_rows: Counter = field(default_factory=Counter)  # rows per generate call -> count


@dataclass
class _Job:
    request: SampleRequest
    future: asyncio.Future

    @property
    def rows(self) -> int:
        return len(self.request.continuations)


def merge_key(req: SampleRequest) -> tuple:
    """Requests with equal keys can share a generate call (stop strings are per call in HF generate;
    a raw prompt and a chat may be rendered differently, BOS included)."""
    return tuple(req.stop), req.prompt.text is None


class GenerateBatcher(JobQueue[_Job]):
    task_name = "w2s-local-generate"

    def __init__(self, run_batch: RunBatch, max_rows: int):
        super().__init__()
        self.run_batch = run_batch
        self.max_rows = max(1, max_rows)
        self.stats = GenerateStats()

    async def submit(self, request: SampleRequest) -> list[Chunk]:
        fut = asyncio.get_running_loop().create_future()
        self._put(_Job(request, fut))
        return await fut

    async def _worker(self) -> None:
        pending: list[_Job] = []  # left over from the last round, oldest first
        group: list[_Job] = []
        try:
            while True:
                jobs = self._drain(pending or [await self._queue.get()])
                live = [j for j in jobs if not j.future.done()]  # cancelled searches drop out
                if not live:
                    pending = []
                    continue
                group, pending = self._take(live)  # the oldest job always leads: first come, first served
                await self._run(group)
        except asyncio.CancelledError:
            self._abandon(group + pending)
            raise

    def _take(self, jobs: list[_Job]) -> tuple[list[_Job], list[_Job]]:
        """The oldest job plus every later one that samples alike, within the row budget."""
        group, rest = [jobs[0]], []
        key, rows = merge_key(jobs[0].request), jobs[0].rows
        for j in jobs[1:]:
            if merge_key(j.request) == key and rows + j.rows <= self.max_rows:
                group.append(j)
                rows += j.rows
            else:
                rest.append(j)
        return group, rest

    async def _run(self, group: list[_Job]) -> None:
        try:
            results = await self.run_batch([j.request for j in group])
        except Exception as e:  # not CancelledError (a BaseException): a cancel goes straight up
            if len(group) > 1:
                # One bad request must not fail the searches it happened to share a call with.
                log.warning("merged generate call failed (%s); running its %d requests alone",
                            type(e).__name__, len(group))
                for j in group:
                    await self._run([j])
                return
            if not group[0].future.done():
                group[0].future.set_exception(e)
            return
        st = self.stats
        st.calls += 1
        st.requests += len(group)
        rows = sum(j.rows for j in group)
        st.rows += rows
        st.batch_rows[rows] += 1
        for j, chunks in zip(group, results):
            if not j.future.done():
                j.future.set_result(chunks)
