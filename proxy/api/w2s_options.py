"""The `w2s` request field both APIs accept: per-request search settings.

    "w2s": {"w": 2, "k": 4, "l": 30, "max_tokens": 64, "trace": true}

Every key but `trace` and `cost` overrides the route's SearchParams (unknown keys and bad
values are a 400 from `proxy.core.config_load.search_params_with`); `trace: true` adds the
whole search (every round's candidates and scores) to the response. SDKs send
it with `extra_body={"w2s": {...}}`.

`guide_weights` ({part: weight}) sets a mixture guide's weights for this request; the engine takes it out
before the search settings are read and checks it (proxy/core/guide_weights.py, docs/mixtures.md).
"""
from __future__ import annotations

from typing import Any, Callable

from w2s.proxy.core.errors import InvalidRequest, UnsupportedField


def overrides(w2s: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (w2s or {}).items() if k not in ("trace", "cost")}


def cost(w2s: dict[str, Any] | None) -> bool:
    """`"w2s": {"cost": true}`: the response's `w2s` field carries what the search cost, even when nothing
    degraded (docs/cost.md). Headers always do; a trace and a degraded search's summary always do."""
    value = (w2s or {}).get("cost", False)
    if not isinstance(value, bool):
        raise InvalidRequest("w2s.cost: must be true or false", param="w2s.cost")
    return value


def trace(w2s: dict[str, Any] | None) -> bool:
    value = (w2s or {}).get("trace", False)
    if not isinstance(value, bool):
        raise InvalidRequest("w2s.trace: must be true or false", param="w2s.trace")
    return value


def check_extra_fields(extra: dict[str, Any] | None, ignored: frozenset[str],
                       neutral: dict[str, Callable[[Any], bool]]) -> None:
    """Fields a wire model does not declare: ignored, harmless at this value, or a 400 naming them."""
    for key, value in (extra or {}).items():
        if key in ignored:
            continue
        ok = neutral.get(key)
        if ok is None:
            raise UnsupportedField(f"{key}: unknown field, not supported by this proxy", param=key)
        if not ok(value):
            raise UnsupportedField(f"{key}: not supported by this proxy (weak-to-strong search "
                                   f"returns plain text)", param=key)
