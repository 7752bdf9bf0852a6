"""What a search round spends upstream, and the money budget (max_cost_usd) that can end a search early.

A part of the search (proxy/core/search.py `_Search`), as a mixin over its state.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from w2s.proxy.core.cost import Prices, Usage, tokens_affordable
from w2s.proxy.core.search_beams import Beam
from w2s.proxy.core.types import SearchParams, SearchResult


@dataclass
class Spent:
    """What one round's draws cost upstream."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    seconds: float = 0.0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def plus(self, other: "Spent") -> "Spent":
        """Both calls of one round (early rejection draws a chunk in two)."""
        return Spent(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Spent)})

    @property
    def usage(self) -> Usage:
        return Usage(self.calls, self.prompt_tokens, self.cached_tokens, self.cache_write_tokens,
                     self.completion_tokens)


class MoneySteps:
    """max_cost_usd (and max_upstream_tokens): how much each draw may write, and when the search must stop."""

    params: SearchParams
    prices: Prices | None  # the upstream's, USD per million tokens
    result: SearchResult
    kept: list[Beam]
    last_draws: int  # draws of the last round (prompt tokens per draw: max_cost_usd's estimate)

    def money_left(self) -> float | None:
        if self.params.max_cost_usd is None or self.prices is None:
            return None
        return self.params.max_cost_usd - (self.result.cost_usd or 0.0)

    def money_spent(self) -> bool:
        left = self.money_left()
        return left is not None and left <= 0

    def budget_spent(self) -> bool:
        """max_upstream_tokens or max_cost_usd is used up: nothing more may be drawn."""
        budget = self.params.max_upstream_tokens
        return (budget is not None and self.result.upstream_completion_tokens >= budget) or self.money_spent()

    def prompt_per_call(self) -> float:
        """Prompt tokens one draw sent in the last round (0 before the first): what the next will send at least."""
        last = self.result.rounds[-1] if self.result.rounds else None
        return last.upstream_prompt_tokens / max(1, self.last_draws) if last is not None else 0.0

    def money_share(self, draws: int) -> int | None:
        """Completion tokens each of this round's draws may write within max_cost_usd; None: no money budget."""
        left = self.money_left()
        if left is None:
            return None
        return max(1, tokens_affordable(left, draws, self.prompt_per_call(), self.prices) // max(1, draws))

    def out_of_money(self) -> bool:
        """Not enough of max_cost_usd left for the next round's prompts and a token each: every kept beam ends
        here (finish_reason length), the best so far is the answer."""
        left = self.money_left()
        if left is None:
            return False
        draws = sum(b.draws for b in self.kept if not b.finished)
        if draws and tokens_affordable(left, draws, self.prompt_per_call(), self.prices) >= draws:
            return False
        self.result.budget_exhausted = True
        for b in self.kept:
            if not b.finished:
                b.finish("length")
        return True
