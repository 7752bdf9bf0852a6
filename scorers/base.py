"""The scorer interface the search sees."""
from __future__ import annotations

from typing import Protocol

from proxy.types import Prompt, ScoreItem


class ScoringSession(Protocol):
    """Scores the partial responses of one search (one prompt).

    A session may keep state between calls (the prompt's KV cache, the last
    round's prefixes) so that a round costs about the new chunk, not the whole
    answer.
    """

    tokens_computed: int  # scorer tokens run through a model so far (both sides)

    async def score(self, items: list[ScoreItem]) -> list[float]: ...

    def close(self) -> None: ...


class Scorer(Protocol):
    def session(self, prompt: Prompt) -> ScoringSession: ...
