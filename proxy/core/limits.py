"""Operator limits: how big one search may be, checked before it is admitted.

A search's cost is its draws per round times its rounds: `"w": 200, "k": 200`
is 40,000 draws a round, and `max_tokens: 1e9` with `l: 1` a billion rounds.
Every limit is set per server (`server.limits`) and may be set per route
(`routes.<r>.limits`, key by key); the route's value wins. A request over a
limit is a 400 naming the limit, its value and where it is set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.types import SearchParams


@dataclass(frozen=True)
class Limits:
    # max(w, n) * k: the draws of one round (round 0 has the most). 64 is CBS 8x8 or Best-of-64.
    max_candidates: int = 64
    max_tokens: int = 4096  # upstream tokens per answer
    max_rounds: int = 256  # ceil(max_tokens / l): rounds of upstream calls and scoring
    # Prompt tokens (the upstream's count) one request may send; None = only the model's context
    # bounds it. Checked with the prompt, before admission (Engine.check_context, proxy/core/context.py).
    max_prompt_tokens: int | None = None
    # A mixture guide (scorers/mixture.py): |weight| of any part, config or request; parts in one mixture.
    max_guide_weight: float = 10.0
    max_guide_parts: int = 4


@dataclass(frozen=True)
class RouteLimits:
    """A route's own limits; None takes the server's."""

    max_candidates: int | None = None
    max_tokens: int | None = None
    max_rounds: int | None = None
    max_prompt_tokens: int | None = None
    max_guide_weight: float | None = None
    max_guide_parts: int | None = None


def rounds_of(params: SearchParams) -> int:
    """The most rounds a search with `params` can run (each round adds at least one token)."""
    return 1 if params.l is None else math.ceil(params.max_tokens / params.l)


def check(params: SearchParams, server: Limits, route: RouteLimits, route_name: str) -> None:
    """InvalidRequest (400, code limit_exceeded) when `params` ask for more than the limits allow.

    The message names the limit where it is set: `routes.<r>.limits.<key>` or `server.limits.<key>`.
    """
    width = max(params.w, params.n)
    asked = {
        "max_candidates": (width * params.k, f"max(w, n) * k = {width} * {params.k}"),
        "max_tokens": (params.max_tokens, "max_tokens"),
        "max_rounds": (rounds_of(params), f"ceil(max_tokens / l) = ceil({params.max_tokens} / {params.l})"),
    }
    for f in fields(Limits):
        if f.name not in asked:
            continue  # the prompt's own limit: checked once the prompt is counted (prompt_limit)
        value, what = asked[f.name]
        limit, where = _limit(f.name, server, route, route_name)
        if value > limit:
            raise InvalidRequest(f"{what} = {value} is over the limit {where}.{f.name} = {limit}",
                                 param=f.name, code="limit_exceeded")


def _limit(key: str, server: Limits, route: RouteLimits, route_name: str):
    """(the limit on `key`, where it is set): the route's own value wins."""
    own = getattr(route, key)
    if own is not None:
        return own, f"routes.{route_name}.limits"
    return getattr(server, key), "server.limits"


def prompt_limit(server: Limits, route: RouteLimits, route_name: str) -> tuple[int, str] | None:
    """(max_prompt_tokens, its config place) for this route, or None when none is set."""
    limit, where = _limit("max_prompt_tokens", server, route, route_name)
    return None if limit is None else (limit, f"{where}.max_prompt_tokens")
