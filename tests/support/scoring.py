"""A model pool and a started row batcher over a test's own config, closed after: the scoring resources a
test builds itself when the session engine's models are not the ones it needs (its own adapters, a head)."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from w2s.proxy.core.config import Config, ScorerConfig
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import RowBatcher


@asynccontextmanager
async def scoring_resources(cfg: Config) -> AsyncIterator[tuple[ModelPool, RowBatcher]]:
    pool = ModelPool(cfg.models, frozenset(cfg.models), threads=1)
    batcher = RowBatcher(pool, ScorerConfig())
    batcher.start()
    try:
        yield pool, batcher
    finally:
        await batcher.aclose()
        pool.close()
