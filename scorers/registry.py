"""Config-driven registry: each guide `kind:` -> its scorer class."""
from __future__ import annotations

from w2s.proxy.core.config import GuideMixtureConfig, GuidePairConfig, GuideRewardModelConfig
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import RowBatcher
from w2s.scorers.mixture import GuideMixture
from w2s.scorers.pair import GuidePair
from w2s.scorers.reward import GuideRewardModel

# A new kind: its config model -> its scorer.
GUIDES: dict[type, type] = {GuidePairConfig: GuidePair, GuideMixtureConfig: GuideMixture,
                            GuideRewardModelConfig: GuideRewardModel}


def make_guide(name: str, cfg: GuidePairConfig | GuideMixtureConfig | GuideRewardModelConfig, pool: ModelPool, batcher: RowBatcher):
    """The scorer for one validated `guides:` section."""
    return GUIDES[type(cfg)](name, cfg, pool, batcher)
