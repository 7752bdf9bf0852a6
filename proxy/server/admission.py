"""Admission control: at most N searches run, at most Q wait, the rest get 429.

A search holds the upstream and the guide models for many rounds, so letting
every request in would only make all of them slow; a bounded FIFO queue keeps
latency predictable and tells clients when to come back (Retry-After).
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from w2s.proxy.core.errors import Overloaded


class Admission:
    def __init__(self, max_running: int, max_queue: int):
        if max_running < 1:
            raise ValueError("max_running must be >= 1")
        self.max_running = max_running
        self.max_queue = max(0, max_queue)
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._mean_seconds = 5.0  # running mean of search time, for Retry-After

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def retry_after(self) -> float:
        """Roughly when a slot frees up for a newcomer, in seconds (1..60)."""
        ahead = self.waiting + 1
        rounds = math.ceil(ahead / self.max_running)
        return float(min(60, max(1, math.ceil(rounds * self._mean_seconds))))

    def observe(self, seconds: float) -> None:
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * max(0.0, seconds)

    async def acquire(self) -> None:
        if self.running < self.max_running and not self.waiting:
            self.running += 1
            return
        if self.waiting >= self.max_queue:
            raise Overloaded(
                f"server busy: {self.running} searches running and {self.waiting} queued "
                f"(server.max_concurrent_searches={self.max_running}, server.max_queue={self.max_queue})",
                retry_after=self.retry_after(),
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # release() hands its slot over: `running` is unchanged
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot arrived just as we were cancelled: pass it on
            raise
        finally:
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass

    def reject_waiting(self, error: Callable[[], Exception]) -> int:
        """Fail every queued request with `error()` (a draining server); running ones keep
        their slots. -> how many were refused."""
        refused = 0
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(error())
                refused += 1
        return refused

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            yield
        finally:
            self.observe(loop.time() - t0)
            self.release()
