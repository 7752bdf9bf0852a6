"""The `w2s` request field both APIs accept: per-request search settings.

    "w2s": {"w": 2, "k": 4, "l": 30, "max_tokens": 64, "trace": true}

Every key but `trace` overrides the route's SearchParams (unknown keys and bad
values are a 400 from `proxy.config.search_params_with`); `trace: true` adds the
whole search (every round's candidates and scores) to the response. SDKs send
it with `extra_body={"w2s": {...}}`.
"""
from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest


def overrides(w2s: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (w2s or {}).items() if k != "trace"}


def trace(w2s: dict[str, Any] | None) -> bool:
    value = (w2s or {}).get("trace", False)
    if not isinstance(value, bool):
        raise InvalidRequest("w2s.trace: must be true or false", param="w2s.trace")
    return value
