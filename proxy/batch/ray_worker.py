"""The worker side of `w2s batch --ray`: one Engine per Ray actor, loaded once.

`BatchWorker` is a plain class; proxy/batch/ray_runner.py makes it a Ray actor
(async: the items a worker holds run concurrently on its one engine, so their
searches share its micro-batches, as `--concurrency` does in one process).

A worker never writes the output file: it returns each item's `Outcome`, and
the driver writes it. So when a worker dies and Ray re-runs its items on the
restarted actor, the first attempt left nothing behind to duplicate.
"""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from typing import TYPE_CHECKING, Any

from w2s.proxy.batch.input import BatchItem
from w2s.proxy.batch.local import EngineRunner
from w2s.proxy.batch.output import Outcome
from w2s.proxy.core.config import Config

if TYPE_CHECKING:
    from w2s.proxy.engine import Engine


class BatchWorker:
    def __init__(self, config: Config):
        self.config = config
        self.engine: Engine | None = None
        self.load_seconds = 0.0
        self.items = 0
        self._loading: asyncio.Lock | None = None  # made inside the actor's event loop

    async def start(self) -> dict[str, Any]:
        """Load the models now (a restarted actor loads them again on its first item)."""
        await self._engine()
        return self.info()

    def info(self) -> dict[str, Any]:
        # ru_maxrss: KiB on Linux. What one more worker costs in memory (its own copy of the models).
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"pid": os.getpid(), "host": socket.gethostname(), "load_seconds": self.load_seconds,
                "threads": self.config.torch_threads, "rss_mb": rss_mb}

    async def run(self, item: BatchItem) -> Outcome:
        runner = EngineRunner(await self._engine())
        outcome = await runner.execute(item)  # never raises but CancelledError
        self.items += 1
        return outcome

    async def _engine(self) -> Engine:
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if self.engine is None:
                from w2s.proxy.engine import Engine  # torch: only inside the worker

                t0 = time.perf_counter()
                engine = Engine(self.config)
                await engine.start()
                self.engine, self.load_seconds = engine, time.perf_counter() - t0
        return self.engine
