"""What a search cost upstream, in tokens and in money: the one place tokens x prices is computed.

Pure. Token counts follow the OpenAI convention whatever the wire said: `prompt` is every prompt token sent,
`cached` and `cache_write` the shares of it read from / written to the upstream's prompt cache (providers map
Anthropic's `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens` onto it).

    cost_usd = ((prompt - cached - cache_write) * input + cached * cached_input
                + cache_write * cache_write_price + completion * output) / 1e6

Prices are USD per million tokens, per upstream (`upstreams.<u>.prices`). A price left out falls back to
`input` (cached_input and cache_write) so an upstream priced with input and output only is never undercounted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prices:
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"prices.{name} must be >= 0")


@dataclass(frozen=True)
class Usage:
    """Upstream tokens of one call, round or search."""

    calls: int = 0
    prompt: int = 0  # every prompt token sent, cached ones included
    cached: int = 0
    cache_write: int = 0
    completion: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.calls + other.calls, self.prompt + other.prompt, self.cached + other.cached,
                     self.cache_write + other.cache_write, self.completion + other.completion)

    @property
    def cached_share(self) -> float | None:
        return self.cached / self.prompt if self.prompt else None


def cost_usd(usage: Usage, prices: Prices | None) -> float | None:
    """Tokens x prices; None without prices."""
    if prices is None:
        return None
    cached_price = prices.input if prices.cached_input is None else prices.cached_input
    write_price = prices.input if prices.cache_write is None else prices.cache_write
    fresh = max(0, usage.prompt - usage.cached - usage.cache_write)
    micro = (fresh * prices.input + usage.cached * cached_price + usage.cache_write * write_price
             + usage.completion * prices.output)
    return micro / 1e6


def tokens_affordable(left_usd: float, draws: int, prompt_per_draw: float, prices: Prices) -> int:
    """Completion tokens `draws` draws may still write with `left_usd`, their prompts (at the input price, the
    most a prompt token can cost but a cache write) paid first. May be <= 0: nothing left."""
    if prices.output <= 0:
        return 1 << 30
    left_micro = left_usd * 1e6 - draws * prompt_per_draw * prices.input
    return int(left_micro // prices.output)


def usage_of(result: Any) -> Usage:
    """A SearchResult's (or RoundTrace's) upstream usage."""
    return Usage(result.upstream_calls, result.upstream_prompt_tokens, getattr(result, "upstream_cached_tokens", 0),
                 getattr(result, "upstream_cache_write_tokens", 0), result.upstream_completion_tokens)


def cost_fields(result: Any) -> dict[str, Any]:
    """The `w2s.cost` object a response carries: calls, tokens with the cached share, cost_usd where priced."""
    u = usage_of(result)
    out: dict[str, Any] = {"upstream_calls": u.calls, "prompt_tokens": u.prompt, "cached_tokens": u.cached,
                           "cache_write_tokens": u.cache_write, "completion_tokens": u.completion}
    if getattr(result, "cost_usd", None) is not None:
        out["cost_usd"] = round(result.cost_usd, 8)
    return out
