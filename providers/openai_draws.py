"""The OpenAI samplers' bookkeeping, free of any HTTP: calls planned, answers read, usage split.

A search round asks for many continuations; identical ones (same prefix and
length) share one request with `n`. The API bills a request once, so its usage
is split over its choices: prompt tokens evenly, completion tokens in
proportion to each choice's length. With no usage in the response, tiktoken
estimates both (and the notes say so). Stop strings the API was not sent, or
left in the text, are cut here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from w2s.providers import tokens
from w2s.providers.retry import MalformedResponse
from w2s.proxy.core.tools import ToolCall
from w2s.proxy.core.types import Chunk, FinishReason, SampleRequest

log = logging.getLogger("w2s.providers.openai")

MAX_API_STOPS = 4  # OpenAI accepts at most 4 stop strings; the rest are applied here
MAX_SEED = 2**63  # seeds are int64 on the wire
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "stop",
                                    "tool_calls": "stop", "function_call": "stop"}


@dataclass
class Call:
    """One HTTP request: `n` draws continuing `prefix`."""

    indices: list[int]
    prefix: str
    max_tokens: int | None
    seed: int | None

    @property
    def n(self) -> int:
        return len(self.indices)


@dataclass
class Ctx:
    """One sample call: the request as sent, and what happened on the way."""

    request: SampleRequest
    api_stops: list[str]
    stops: list[str]  # every stop string, also cut here
    rendered: str = ""  # completions: the prompt text (the prefix follows it)
    calls: int = 0  # HTTP requests made (redraws included)
    notes: set[str] = field(default_factory=set)


@dataclass
class Drawn:
    """A parsed response, before token accounting."""

    texts: list[str]
    finishes: list[FinishReason]
    prompt_tokens: int | None
    completion_tokens: int | None
    calls: list[tuple[ToolCall, ...]] = field(default_factory=list)  # per choice, when the API parsed tool calls

    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens: the prompt cache's share

    @property
    def has_usage(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None


def plan_calls(request: SampleRequest, max_n: int) -> list[Call]:
    """Group identical (prefix, max_tokens) continuations; at most `max_n` draws a call.

    With a seed, each call of one group gets its own (seed + j): the same seed
    on two calls with the same prompt would draw the same samples twice. Search
    seeds are derived (seed * 1_000_003 + round), so they are folded into the
    non-negative int64 range the APIs accept.
    """
    groups: dict[tuple[str, int | None], list[int]] = {}
    for i, c in enumerate(request.continuations):
        groups.setdefault((c.prefix, c.max_tokens), []).append(i)
    calls = []
    for (prefix, max_tokens), idx in groups.items():
        for j, start in enumerate(range(0, len(idx), max_n)):
            seed = None if request.seed is None else (request.seed + j) % MAX_SEED
            calls.append(Call(idx[start:start + max_n], prefix, max_tokens, seed))
    return calls


def split_stops(stops: list[str]) -> tuple[list[str], list[str]]:
    """(sent to the API, applied here): the API takes at most 4."""
    uniq = list(dict.fromkeys(s for s in stops if s))
    return uniq[:MAX_API_STOPS], uniq[MAX_API_STOPS:]


def cut_at_stops(text: str, finish: FinishReason, stops: list[str]) -> tuple[str, FinishReason]:
    """Apply stop strings the API was not sent: cut before the first one, like the API does."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not hits:
        return text, finish
    return text[: min(hits)], "stop"


def completion_counts(drawn: Drawn, call: Call, enc: Any) -> list[int]:
    """Each choice's completion tokens, summing to the API's total when it gave one."""
    if drawn.completion_tokens is None:
        return [tokens.count(enc, t) for t in drawn.texts]
    if len(drawn.texts) == 1:
        return [drawn.completion_tokens]
    cut = [f == "length" and call.max_tokens is not None for f in drawn.finishes]
    return _split_with_limits(drawn.completion_tokens, drawn.texts, cut, call.max_tokens or 0, enc)


def _split_with_limits(total: int, texts: list[str], cut: list[bool], limit: int, enc: Any) -> list[int]:
    """A choice cut by max_tokens wrote exactly `limit`; the rest of the total goes to the choices that
    stopped, in proportion to their tiktoken counts. (A proportional split over all of them could credit
    a cut choice with more than its limit.) A total that cannot cover that is split over all of them."""
    stopped = [i for i, c in enumerate(cut) if not c]
    rest = total - limit * (len(cut) - len(stopped))
    if not stopped or rest < len(stopped):
        return tokens.split_total(total, [limit if c else tokens.count(enc, t) for t, c in zip(texts, cut)])
    shares = iter(tokens.split_total(rest, [tokens.count(enc, texts[i]) for i in stopped]))
    return [limit if c else next(shares) for c in cut]


def needs_encoding(drawn: Drawn, call: Call) -> bool:
    """Whether counting this response needs tiktoken (missing usage, or n > 1 to split)."""
    if not drawn.has_usage:
        return True
    counted = call.max_tokens is None or any(f != "length" for f in drawn.finishes)
    return len(drawn.texts) > 1 and counted


def chunks_of(drawn: Drawn, ctx: Ctx, completion: list[int], prompt_total: int, label: str) -> list[Chunk]:
    """The choices as chunks: stop strings cut, the request's prompt tokens split evenly."""
    prompt = tokens.split_total(prompt_total, [1] * len(drawn.texts))
    chunks = []
    for i, raw in enumerate(drawn.texts):
        # Every stop string is cut here too: the API takes at most 4, and some servers leave it in.
        text, finish = cut_at_stops(raw, drawn.finishes[i], ctx.stops)
        if len(text) < len(raw) and any(s in raw for s in ctx.api_stops):
            ctx.notes.add(f"{label} left a stop string in its text: cut here")
        calls = drawn.calls[i] if i < len(drawn.calls) else ()
        chunks.append(Chunk(text=text, finish_reason=finish, completion_tokens=completion[i],
                            prompt_tokens=prompt[i], tool_calls=calls))
    if drawn.cached_tokens:  # the prompt cache's share, split over the choices like the prompt
        for c, share in zip(chunks, tokens.split_total(drawn.cached_tokens, [1] * len(chunks))):
            c.cached_tokens = share
    return chunks


def cached_of(usage: Any) -> int | None:
    """OpenAI-style `usage.prompt_tokens_details.cached_tokens` (also `input_tokens_details`), or None."""
    for name in ("prompt_tokens_details", "input_tokens_details"):
        details = getattr(usage, name, None)
        v = details.get("cached_tokens") if isinstance(details, dict) else getattr(details, "cached_tokens", None)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return None


def finish_of(reason: Any) -> FinishReason:
    if reason is None:
        return "stop"
    got = _FINISH.get(str(reason))
    if got is None:
        log.debug("unknown finish_reason %r treated as stop", reason)
        return "stop"
    return got


def parse(resp: Any, n: int, *, chat: bool) -> Drawn:
    """Read a (chat) completion; a body of the wrong shape is a MalformedResponse (retried)."""
    try:
        choices = sorted(resp.choices, key=lambda c: c.index or 0)[:n]
        if not choices:
            raise MalformedResponse("no choices")
        texts = [(c.message.content or "") if chat else (c.text or "") for c in choices]
        calls = _calls(choices, chat)
        finishes = [finish_of(c.finish_reason) for c in choices]
        usage = getattr(resp, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        cached = cached_of(usage)
    except (AttributeError, TypeError, ValueError) as e:
        raise MalformedResponse(type(e).__name__) from None
    if not all(isinstance(t, str) for t in texts):
        raise MalformedResponse("choice text is not a string")
    drawn = Drawn(texts, finishes, _count_or_none(prompt), _count_or_none(completion), calls=calls)
    drawn.cached_tokens = cached
    return drawn


def _calls(choices: list[Any], chat: bool) -> list[tuple[ToolCall, ...]]:
    return [tool_calls_of(c.message) for c in choices] if chat else []


def tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """A chat message's parsed `tool_calls` as core values (function calls only)."""
    out = []
    for c in getattr(message, "tool_calls", None) or ():
        fn = getattr(c, "function", None)
        if fn is None or not isinstance(getattr(fn, "name", None), str):
            continue
        args = fn.arguments if isinstance(fn.arguments, str) else "{}"
        out.append(ToolCall(str(getattr(c, "id", None) or f"call_{len(out)}"), fn.name, args))
    return tuple(out)


def _count_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
