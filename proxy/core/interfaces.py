"""The two seams of the search: the upstream it draws from and the guide that scores.

The search (proxy/core/search.py) sees only these protocols, so it runs the same
over a real model, a remote API or a scripted test part.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from w2s.proxy.core.types import Prompt, SampleRequest, SampleResult, ScoreItem


@runtime_checkable
class Sampler(Protocol):
    """One upstream (providers/): draws chunks that continue partial answers."""

    name: str
    # True when the upstream continues a partial answer exactly (CBS possible).
    # False: only whole answers can be drawn, so the search degrades to guided
    # Best-of-N and says so.
    exact_continuation: bool
    model_names: tuple[str, ...]  # local models (config `models:` names) it needs loaded first

    async def start(self) -> None:
        """Called once the models are loaded, before the first request (probes, warm-up)."""
        ...

    async def prepare(self, continuation: bool) -> None:
        """Called before each search; `continuation`: it will continue partial answers (CBS).

        An upstream whose continuation is not yet verified probes it here, so the
        search plans with the truth (`exact_continuation`), or refuses as configured.
        """
        ...

    def capabilities(self) -> dict[str, Any]:
        """What the upstream was found to do (n limit, continuation...): shown in /v1/models and /metrics."""
        ...

    async def sample(self, request: SampleRequest) -> SampleResult:
        """One chunk per continuation, in order.

        A failed continuation comes back as a Chunk with `error` set; when every
        one fails the sampler raises `proxy.core.errors.UpstreamError`.
        """
        ...

    async def aclose(self) -> None: ...


class ScoringSession(Protocol):
    """Scores the partial responses of one search (one prompt).

    A session may keep state between calls (the prompt's KV cache, the last
    round's prefixes) so that a round costs about the new chunk, not the whole
    answer.
    """

    tokens_computed: int  # scorer tokens run through a model so far (both sides)

    async def score(self, items: list[ScoreItem]) -> list[float]: ...

    def close(self) -> None: ...


@runtime_checkable
class Scorer(Protocol):
    """One guide (scorers/): opens a scoring session per search."""

    name: str
    model_names: set[str]  # local models it needs loaded first

    async def start(self) -> None:
        """Called once the models are loaded (attach them, warm up)."""
        ...

    def session(self, prompt: Prompt) -> ScoringSession: ...
