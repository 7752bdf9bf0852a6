"""Per-upstream admission: a concurrency cap, an optional requests-per-minute
rate, and a per-attempt deadline.

One `Limiter` per sampler. Each HTTP attempt (retries included: each is a
request the upstream counts) takes a slot; backoff sleeps hold none, so a
rate-limited upstream does not also starve the others' concurrency.
Cancellation simply propagates: a cancelled waiter leaves the queue, and a
cancelled attempt cancels the SDK call inside it.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, TypeVar

T = TypeVar("T")


class RateLimiter:
    """Token bucket: `per_minute` requests a minute, bursts up to `burst`.

    The default burst is one second's worth (at least 1), so a fresh limiter
    does not fire a whole minute's quota at once.
    """

    def __init__(self, per_minute: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError("requests_per_minute must be > 0")
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0


class Limiter:
    def __init__(self, concurrency: int, requests_per_minute: float | None = None, timeout: float | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self.rate = RateLimiter(requests_per_minute) if requests_per_minute else None
        self.timeout = timeout
        self.in_flight = 0  # for tests and metrics

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._sem:
            if self.rate is not None:
                await self.rate.acquire()
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """One attempt: wait for a slot, then run `call` under the deadline.

        The deadline raises the builtin TimeoutError, which the retry layer
        treats like the SDK's own timeout. It also bounds slow responses that
        trickle bytes under the SDK's per-read timeout.
        """
        async with self.slot():
            if self.timeout is None:
                return await call()
            async with asyncio.timeout(self.timeout):
                return await call()
