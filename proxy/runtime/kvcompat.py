"""The KV cache's keyword across transformers versions.

transformers 5.24 renamed a forward's and `generate`'s cache argument, and the output field that returns it,
from `past_key_values` to `cache`. Older 5.x is common (the lent GPU image has 5.17) and passes an unknown
`cache=` silently into **kwargs, so a prefill would fill nothing. The name is read once from the installed
version's output class rather than from a version number.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any


@functools.cache
def cache_name() -> str:
    from transformers.modeling_outputs import BaseModelOutputWithPast

    fields = {f.name for f in dataclasses.fields(BaseModelOutputWithPast)}
    return "cache" if "cache" in fields else "past_key_values"


def cache_kw(cache: Any) -> dict[str, Any]:
    """{name: cache} for a decoder forward or `generate`."""
    return {cache_name(): cache}


def out_cache(out: Any) -> Any:
    """The cache a forward returned."""
    return getattr(out, cache_name())
