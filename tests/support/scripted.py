"""Scripted parts for a real Engine: an upstream and a guide with no model.

They plug into the sampler/scorer seam (proxy/core/interfaces.py), so tests run
the real search, engine, server and batch code over them. They exist for what a
real part cannot do on demand: exact timing, a failure at a chosen round, a
slow or failing start, a hand-written score. Everything else is tested on the
real small models.

The default script makes the search easy to follow: a chunk of L tokens is L
words, and the last word carries the draw's index among its siblings
(" alpha0", " alpha1"); the default guide prefers 0s, so the kept beams share a
prefix that grows every round (the committed prefix streams round by round).
"""
from __future__ import annotations

import asyncio
from typing import Callable

from w2s.proxy.core.config import Config
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.errors import UpstreamError
from w2s.proxy.core.types import Chunk, Prompt, SampleRequest, SampleResult, ScoreItem

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
UNBOUNDED = 4  # words drawn for a continuation with no token limit

# (prefix, sibling index, token limit) -> the chunk that continues it
Script = Callable[[str, int, int], Chunk]


def words_chunk(prefix: str, sibling: int, limit: int) -> Chunk:
    start = len(prefix.split())
    words = [WORDS[(start + i) % len(WORDS)] for i in range(limit)]
    return Chunk(" " + " ".join(words) + str(sibling), "length", completion_tokens=limit, prompt_tokens=5 + start)


def prefers_zeros(item: ScoreItem) -> float:
    """+10 for each word a 0-draw ended, minus the index of every other draw."""
    score = 0.0
    for w in item.text.split():
        if w[-1:].isdigit():
            score += 10.0 if w.endswith("0") else -float(w[-1])
    return score


class ScriptedSampler:
    """An upstream that writes `script`'s chunks, after `seconds`, and fails on cue."""

    model_names: tuple[str, ...] = ()

    def __init__(self, name: str = "scripted", *, script: Script = words_chunk, seconds: float = 0.0,
                 fail_at_tokens: int | None = None, exact: bool = True,
                 start_seconds: float = 0.0, start_error: Exception | None = None):
        self.name = name
        self.script = script
        self.seconds = seconds
        self.fail_at_tokens = fail_at_tokens  # fail a draw continuing a prefix this many words long
        self.exact_continuation = exact
        self.start_seconds, self.start_error = start_seconds, start_error
        self.requests: list[SampleRequest] = []
        self.calls = 0  # sample calls answered (one per search round)
        self.cancelled = 0  # sample calls cancelled while drawing

    async def start(self) -> None:
        await asyncio.sleep(self.start_seconds)
        if self.start_error is not None:
            raise self.start_error

    async def prepare(self, continuation: bool) -> None:
        pass

    def capabilities(self) -> dict:
        return {"continuation": "scripted"}

    async def sample(self, request: SampleRequest) -> SampleResult:
        self.requests.append(request)
        request = request.fold_prefill()
        if self.fail_at_tokens is not None and any(len(c.prefix.split()) >= self.fail_at_tokens
                                                   for c in request.continuations):
            raise UpstreamError("scripted upstream down", provider=self.name)
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.calls += 1
        siblings: dict[str, int] = {}
        chunks = []
        for c in request.continuations:
            s = siblings[c.prefix] = siblings.get(c.prefix, -1) + 1
            chunks.append(self.script(c.prefix, s, c.max_tokens if c.max_tokens is not None else UNBOUNDED))
        return SampleResult(chunks, calls=1, exact=self.exact_continuation)

    async def aclose(self) -> None:
        pass


class ScriptedScorer:
    """A guide whose score is `score(item)`; counts one scorer token per word (+1 for EOS)."""

    model_names: set[str] = set()

    def __init__(self, name: str = "scripted", score: Callable[[ScoreItem], float] = prefers_zeros):
        self.name = name
        self.score_fn = score
        self.sessions = 0  # one per guided search
        self.scored: list[ScoreItem] = []

    async def start(self) -> None:
        pass

    def session(self, prompt: Prompt) -> "_Session":
        self.sessions += 1
        return _Session(self)


class _Session:
    def __init__(self, scorer: ScriptedScorer):
        self.scorer = scorer
        self.tokens_computed = 0

    async def score(self, items: list[ScoreItem]) -> list[float]:
        self.scorer.scored += items
        self.tokens_computed += sum(len(i.text.split()) + i.finished for i in items)
        return [self.scorer.score_fn(i) for i in items]

    def close(self) -> None:
        pass


def fake_config(**server) -> Config:
    """Two routes over upstream "up" and guide "g"; their model "m" is never loaded."""
    return parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"up": {"provider": "local", "model": "m"}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {
            "fake-cbs": {"upstream": "up", "guide": "g", "search": {"w": 2, "k": 2, "l": 1, "max_tokens": 8}},
            "fake-pass": {"upstream": "up", "passthrough": True, "search": {"max_tokens": 8}},
        },
        "server": server,
    }, "fake")


def scripted_engine(config: Config | None = None, sampler: ScriptedSampler | None = None,
                    scorer: ScriptedScorer | None = None):
    """A real Engine over `fake_config()` with the scripted upstream "up" and guide "g"."""
    from w2s.proxy.engine import Engine

    return Engine(config or fake_config(), samplers={"up": sampler or ScriptedSampler("up")},
                  guides={"g": scorer or ScriptedScorer("g")})
