"""A mixture guide's weights, dialled per request: `"w2s": {"guide_weights": {"plain": 1.5}}`.

The request names parts of the route's mixture and gives each a finite weight with
|weight| <= max_guide_weight (a negative weight steers away); parts it leaves out keep
their config weight. Anything else is a 400 naming the key (proxy/core/limits.py for where
a limit is set).
"""
from __future__ import annotations

import math
from typing import Any

from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.limits import Limits, RouteLimits

PARAM = "w2s.guide_weights"


def limit_of(key: str, server: Limits, route: RouteLimits, route_name: str) -> tuple[Any, str]:
    """(the limit, where it is set): the route's own value wins."""
    own = getattr(route, key)
    return (own, f"routes.{route_name}.limits") if own is not None else (getattr(server, key), "server.limits")


def check_weight(where: str, value: Any, limit: float, limit_where: str) -> float:
    """`value` as a float when it is a finite number within +-limit; InvalidRequest naming `where` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{where}: must be a finite number, not {value!r}", param=where)
    if abs(value) > limit:
        raise InvalidRequest(f"{where}: |{value}| is over the limit {limit_where}.max_guide_weight = {limit}",
                             param=where, code="limit_exceeded")
    return float(value)


def resolve(asked: Any, defaults: dict[str, float], guide: str | None, server: Limits, route: RouteLimits,
            route_name: str) -> dict[str, float]:
    """The mixture's weights for one request: `defaults` (the config's) with `asked` applied, checked."""
    if guide is None or not defaults:
        raise InvalidRequest(f"{PARAM}: route {route_name!r} has no mixture guide "
                             f"({'no guide' if guide is None else f'guide {guide!r} is a pair'})", param=PARAM)
    if not isinstance(asked, dict):
        raise InvalidRequest(f"{PARAM}: must be an object of part name -> weight", param=PARAM)
    parts, parts_where = limit_of("max_guide_parts", server, route, route_name)
    if len(defaults) > parts:
        raise InvalidRequest(f"{PARAM}: guide {guide!r} has {len(defaults)} parts, over the limit "
                             f"{parts_where}.max_guide_parts = {parts}", param=PARAM, code="limit_exceeded")
    limit, where = limit_of("max_guide_weight", server, route, route_name)
    out = dict(defaults)
    for name, value in asked.items():
        if name not in defaults:
            raise InvalidRequest(f"{PARAM}.{name}: not a part of guide {guide!r} (its parts: "
                                 f"{', '.join(defaults)})", param=f"{PARAM}.{name}")
        out[name] = check_weight(f"{PARAM}.{name}", value, limit, where)
    return out
