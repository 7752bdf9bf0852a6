"""A queue of jobs drained by one asyncio task: the shape of both micro-batchers.

Searches put a job and await its future; the worker (a subclass's `_worker`)
takes whatever has queued up and runs it as one batch on the model thread.
The task starts lazily on the running loop, so a batcher can be built before
the loop exists (the app factory does).
"""
from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

J = TypeVar("J")


class JobQueue(Generic[J]):
    task_name = "w2s-job-queue"

    def __init__(self) -> None:
        self._queue: asyncio.Queue[J] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._worker(), name=self.task_name)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def _put(self, job: J) -> None:
        self.start()
        self._queue.put_nowait(job)

    def _drain(self, jobs: list[J]) -> list[J]:
        """`jobs` plus every job queued behind them (they arrived while the last batch ran)."""
        jobs = list(jobs)
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        return jobs

    async def _worker(self) -> None:
        """Runs until cancelled; on cancellation it `_abandon`s the jobs it holds."""
        raise NotImplementedError

    @staticmethod
    def _abandon(jobs: list[J]) -> None:
        """Jobs that will never run (shutdown): their searches get CancelledError instead of hanging."""
        for j in jobs:
            fut = getattr(j, "future", None)
            if fut is not None and not fut.done():
                fut.cancel()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            self._abandon(self._drain([]))
