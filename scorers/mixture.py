"""A mixture guide: a weighted sum of pair and reward-model guides, score = sum(weight_p * score_p).

Each part scores exactly as it does alone (its own sides, templates, systems and
beta); the mixture only pools the work. The parts' sides are de-duplicated: two pairs
whose untuned side is the same model with the same template and system (both trained
pairs on SmolLM2: adapter on / adapter off) share that side's rows, computed once per
candidate. Every side's rows then go to the micro-batcher in one submission per set of
weights (scorers/pair.py PairSession.side_sums), so all parts on one base run in one
forward pass, each adapter's rows and the shared `__base__` rows mixed with PEFT's
adapter_names (proxy/runtime/adapters.py). A reward-model part is one more side (its
value is the reward, scorers/reward.py): a trained reward model's LoRA is one more
adapter on the same base, so its rows join that pass too. Parts on different bases
batch per base.

The weights are the config's, or a request's (`"w2s": {"guide_weights": {...}}`, checked by
proxy/core/guide_weights.py before the search). Each candidate's part scores are kept for
the trace (`parts_of`).
"""
from __future__ import annotations

from dataclasses import dataclass

from w2s.proxy.core.config import GuideMixtureConfig, GuidePairConfig
from w2s.proxy.core.types import Prompt, ScoreItem
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import RowBatcher
from w2s.scorers.pair import GuidePair, PairSession, _Side
from w2s.scorers.reward import GuideRewardModel


@dataclass
class _Union:
    """What PairSession needs of a pair: a name, the sides to score, the batcher and the pool."""

    name: str
    sides: list[_Side]
    batcher: RowBatcher
    pool: ModelPool


def _side_key(side: _Side) -> tuple:
    """Sides with one key tokenize and score identically: one row serves both."""
    head = getattr(side, "head", None)  # a reward model's: its rows are another side's even on one model
    return side.cfg.model, side.cfg.template, side.cfg.system, None if head is None else id(head)


def union_sides(pairs: list) -> tuple[list[_Side], list[tuple[int, ...]]]:
    """(the distinct sides of all parts, per part the indices of its sides among them: a pair's
    (tuned, untuned), a reward model's (reward,))."""
    sides: list[_Side] = []
    where: dict[tuple, int] = {}
    index = []
    for pair in pairs:
        ids = []
        for side in pair.sides:
            k = _side_key(side)
            if k not in where:
                where[k] = len(sides)
                sides.append(side)
            ids.append(where[k])
        index.append(tuple(ids))
    return sides, index


class GuideMixture:
    def __init__(self, name: str, cfg: GuideMixtureConfig, pool: ModelPool, batcher: RowBatcher):
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.batcher = batcher
        self.parts = {p: (GuidePair if isinstance(c, GuidePairConfig) else GuideRewardModel)(p, c, pool, batcher)
                      for p, c in cfg.pairs.items()}
        self._sides: list[_Side] = []
        self._index: list[tuple[int, ...]] = []

    @property
    def model_names(self) -> set[str]:
        return self.cfg.model_names()

    @property
    def weights(self) -> dict[str, float]:
        return self.cfg.weights

    async def start(self) -> None:
        self.bind()

    def bind(self) -> None:
        for part in self.parts.values():
            part.bind()
        self._sides, self._index = union_sides(list(self.parts.values()))

    def session(self, prompt: Prompt, answer_tokens: int | None = None,
                weights: dict[str, float] | None = None) -> "MixtureSession":
        """`weights`: this request's (already checked); None = the config's."""
        if not self._sides:
            self.bind()
        return MixtureSession(self, prompt, answer_tokens, weights or self.weights)


class MixtureSession:
    """Scores one search's candidates under every part at once; remembers each candidate's part scores."""

    def __init__(self, mix: GuideMixture, prompt: Prompt, answer_tokens: int | None, weights: dict[str, float]):
        self.mix = mix
        self.weights = dict(weights)
        self._inner = PairSession(_Union(mix.name, mix._sides, mix.batcher, mix.pool), prompt, answer_tokens)
        self._parts: dict[tuple[str, bool], dict[str, float]] = {}

    @property
    def tokens_computed(self) -> int:
        return self._inner.tokens_computed

    @property
    def notes(self) -> list[str]:
        return self._inner.notes

    async def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        sums = await self._inner.side_sums(items)  # per distinct side: (len(items),)
        out = []
        for ri, it in enumerate(items):
            parts = {name: part.combine([sums[si][ri] for si in where])
                     for (name, part), where in zip(self.mix.parts.items(), self.mix._index)}
            self._parts[(it.text, it.finished)] = parts
            out.append(sum(self.weights[name] * s for name, s in parts.items()))
        return out

    def parts_of(self, item: ScoreItem) -> dict[str, float] | None:
        """The part scores (raw, before weights) this session gave `item`; None if it never scored it."""
        return self._parts.get((item.text, item.finished))

    def close(self) -> None:
        self._inner.close()
