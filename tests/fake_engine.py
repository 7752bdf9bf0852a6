"""A model-free Engine for server tests that need exact timing or faults.

It is the real `proxy.engine.Engine` (same route resolution, params and
validation) with `start` and `run` replaced: each round sleeps `round_seconds`
and grows every kept beam by one word, so tests can hold a search open, count
its rounds, and see it stop.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from proxy.config import Config, parse_config
from proxy.engine import Engine
from proxy.errors import UpstreamError
from proxy.types import Answer, CandidateTrace, Prompt, RoundTrace, SearchParams, SearchResult

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def fake_config(**server) -> Config:
    """Two routes over a fake local upstream (never loaded)."""
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


@dataclass
class FakeEngine(Engine):
    config: Config
    round_seconds: float = 0.0
    start_seconds: float = 0.0
    start_error: Exception | None = None
    fail_at_round: int | None = None  # raise UpstreamError when this round starts
    rounds_run: int = 0
    searches_started: int = 0
    searches_cancelled: int = 0
    searches_done: int = 0
    prompts: list[Prompt] = field(default_factory=list)
    params_seen: list[SearchParams] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samplers, self.guides, self.ready = {}, {}, False

    async def start(self) -> None:
        await asyncio.sleep(self.start_seconds)
        if self.start_error is not None:
            raise self.start_error
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False

    async def run(self, route, prompt, overrides=None, on_round=None, params=None) -> SearchResult:
        name, rc = self.config.route(route)
        params = params or self.params_for(name, overrides)
        self.prompts.append(prompt)
        self.params_seen.append(params)
        self.searches_started += 1
        width = max(params.w, params.n)
        beams = [""] * width
        result = SearchResult(answers=[], mode="passthrough" if rc.passthrough else "cbs")
        try:
            tokens = 0
            while tokens < params.max_tokens:
                if self.fail_at_round is not None and len(result.rounds) == self.fail_at_round:
                    raise UpstreamError("fake upstream down", provider="fake")
                await asyncio.sleep(self.round_seconds)
                step = min(params.l or params.max_tokens, params.max_tokens - tokens)
                # Every beam descends from last round's best and differs only in
                # its last word: the committed prefix grows by a round each round.
                words = [WORDS[(tokens + j) % len(WORDS)] for j in range(step)]
                beams = [beams[0] + " " + " ".join(words) + str(i) for i in range(width)]
                tokens += step
                self.rounds_run += 1
                trace = RoundTrace(
                    index=len(result.rounds),
                    candidates=[CandidateTrace(b, i, float(-i), tokens >= params.max_tokens, True)
                                for i, b in enumerate(beams)],
                    upstream_calls=1, upstream_prompt_tokens=5 * width * params.k if tokens == step else 9,
                    upstream_completion_tokens=step * width, scorer_tokens=step * width,
                    sample_seconds=self.round_seconds, score_seconds=0.0,
                )
                result.rounds.append(trace)
                result.upstream_calls += 1
                result.upstream_prompt_tokens += trace.upstream_prompt_tokens
                result.upstream_completion_tokens += trace.upstream_completion_tokens
                result.scorer_tokens += trace.scorer_tokens
                if on_round is not None:
                    await on_round(trace, list(beams))
        except asyncio.CancelledError:
            self.searches_cancelled += 1
            raise
        self.searches_done += 1
        result.answers = [Answer(b, float(-i), "length", tokens) for i, b in enumerate(beams[: params.n])]
        return result
