"""The two lists of names the rest of the code branches on.

`DrawMode` is how an upstream draws a candidate (its API's way of continuing a
partial answer, or not); `SearchMode` is what a search runs as. Each enum is
the single list of its names: the config's `provider:`/`mode:` values, the
registry, the labels in responses and traces all come from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from w2s.proxy.core.types import SearchParams


class DrawMode(StrEnum):
    """How an upstream draws: the first four continue a partial answer exactly."""

    LOCAL = "local"  # in process (providers/local.py)
    COMPLETIONS = "completions"  # POST /v1/completions, prompt + partial answer as raw text
    CHAT_CONTINUE = "chat-continue"  # chat completions ending in the partial assistant message
    ANTHROPIC_PREFILL = "anthropic-prefill"  # Messages API, the partial answer as assistant prefill
    CHAT_ONLY = "chat-only"  # chat completions that cannot continue: whole answers only
    RESPONSES = "responses"  # OpenAI's Responses API (models served only there): whole answers only

    @property
    def continues(self) -> bool:
        """Whether this way of drawing can continue a partial answer (before any probe says otherwise)."""
        return self not in (DrawMode.CHAT_ONLY, DrawMode.RESPONSES)


class SearchMode(StrEnum):
    """What one search runs as (the `x-w2s-mode` header, the trace's `mode`)."""

    CBS = "cbs"  # chunk-level beam search with exact continuation
    BON = "bon"  # guided Best-of-N (l: null) on an upstream that could continue
    BON_APPROX = "bon-approx"  # guided Best-of-N because the upstream cannot continue a partial answer
    SAMPLE = "sample"  # w = k = 1: one plain draw, nothing to choose
    PASSTHROUGH = "passthrough"  # a route with no guide: n independent draws


def decide_mode(params: SearchParams, *, exact: bool, passthrough: bool = False, whole: bool = False) -> SearchMode:
    """The one place a search's mode is decided: its shape, its route, its upstream's continuation.

    `whole`: the answers cannot be cut into chunks (a tool call, JSON under a format): guided
    Best-of-N over whole answers, `bon` where the upstream could have continued, else `bon-approx`."""
    if passthrough:
        return SearchMode.PASSTHROUGH
    if params.w * params.k == 1:
        return SearchMode.SAMPLE
    if not exact:
        return SearchMode.BON_APPROX
    return SearchMode.BON if params.l is None or whole else SearchMode.CBS


@dataclass(frozen=True)
class ModeChange:
    """A search that could not run as planned: the explicit transition and its reason."""

    before: SearchMode
    after: SearchMode
    reason: str
