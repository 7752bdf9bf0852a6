"""Config-driven registry: each guide `kind:` -> its scorer class."""
from __future__ import annotations

from w2s.proxy.core.config import GuidePairConfig
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import RowBatcher
from w2s.scorers.pair import GuidePair

GUIDES: dict[type, type] = {GuidePairConfig: GuidePair}  # a new kind: its config model -> its scorer


def make_guide(name: str, cfg: GuidePairConfig, pool: ModelPool, batcher: RowBatcher):
    """The scorer for one validated `guides:` section."""
    return GUIDES[type(cfg)](name, cfg, pool, batcher)
