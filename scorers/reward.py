"""The reward-model guide: score(y) = beta * reward(prompt + y).

The model is a `models:` name whose decoder the pool loads like any guide's (a
sequence-classification checkpoint loads as its decoder; a trained reward model is
its base plus its LoRA as one more adapter on the base the pairs share). The
scalar head is applied here, on the last real token's hidden state
(proxy/runtime/heads.py). The candidate renders and tokenizes as a pair side's
does (proxy/core/rendering.py ResponseEncoder, which train-guide --kind
reward-model also trains on): a finished candidate ends with the model's EOS, the
end-of-turn token that closes an assistant message in its chat template, and an
unfinished one without it, so "this answer is complete" is part of what is scored.

It is one side in PairSession terms: its rows go to the same micro-batcher, with
the same prompt-KV reuse and window fitting, and in a mixture its rows share the
forward pass of the pair sides on its base (scorers/mixture.py).
"""
from __future__ import annotations

from w2s.proxy.core.config import GuideRewardModelConfig
from w2s.proxy.core.types import Prompt
from w2s.proxy.runtime.heads import load_head
from w2s.proxy.runtime.loading import converted, resolve_source
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import RowBatcher
from w2s.scorers.pair import PairSession, _Side
from w2s.scorers.rows import supports_reuse


def head_path(cfg: GuideRewardModelConfig, pool: ModelPool) -> str:
    """`head:` if set, else the model's own source directory (a sequence-classification checkpoint)."""
    if cfg.head is not None:
        return cfg.head
    where, gguf = resolve_source(pool.configs[cfg.model].source)
    return str(converted(where, gguf) if gguf is not None else where)


class GuideRewardModel:
    def __init__(self, name: str, cfg: GuideRewardModelConfig, pool: ModelPool, batcher: RowBatcher,
                 incremental: bool = True):
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.batcher = batcher
        self.incremental = incremental and batcher.cfg.incremental
        self.sides: list[_Side] = []  # one: what PairSession scores

    @property
    def model_names(self) -> set[str]:
        return self.cfg.model_names()

    async def start(self) -> None:
        self.bind()

    def bind(self) -> None:
        if self.sides:
            return  # the head is loaded once
        m = self.pool.get(self.cfg.model)
        hidden = m.model.config.get_text_config().hidden_size
        head = load_head(head_path(self.cfg, self.pool), hidden, m.dtype, m.device)
        self.sides = [_Side(self.cfg.side(), m, self.incremental and supports_reuse(m.model), head)]

    def combine(self, values: list[float]) -> float:
        """The part score from this guide's sides' values (one: the reward)."""
        return self.cfg.beta * values[0]

    def session(self, prompt: Prompt, answer_tokens: int | None = None) -> PairSession:
        """A PairSession over the one reward side: its score is combine([reward]) = beta * reward."""
        self.bind()
        return PairSession(self, prompt, answer_tokens)

