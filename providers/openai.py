"""OpenAI and OpenAI-compatible upstreams (OpenAI, vLLM, llama.cpp, Ollama...).

Three modes (`mode:` in the upstream's config):

* ``completions`` (default): POST /v1/completions with the rendered prompt plus
  the partial answer as raw text. Exact continuation.
* ``chat-continue``: chat completions ending in the partial assistant message,
  with the server's continue flags (vLLM: ``continue_final_message``).
  Exact continuation, as far as the server's chat template allows.
* ``chat-only``: OpenAI chat models, which cannot continue a partial answer.
  Only whole answers are drawn (the search runs guided Best-of-N).

Identical continuations (same prefix and length) share one request with `n`,
split into several when `n` exceeds the server's `max_n`. A server that ignores
or caps `n` is found on its first short answer: the missing draws are drawn at
once as separate parallel calls, and its limit is remembered (and reported).

Real servers differ from their docs, so nothing is trusted that a probe has not
shown: continuation is probed before CBS relies on it (providers/continuation.py),
stop strings are cut here too (some servers leave them in the text), and usage
is estimated when missing. Each workaround is said in the response's notes.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import openai as sdk

from w2s.providers import tokens
from w2s.providers.chat_templates import load_chat_template
from w2s.providers.continuation import ContinuationCheck
from w2s.providers.limits import Limiter
from w2s.providers.retry import MalformedResponse, RetryPolicy, RetryStats, SDKErrors, call_with_retry, draw_all
from w2s.proxy.core.config import UpstreamConfig, resolve_secret
from w2s.proxy.core.errors import ConfigError, InvalidRequest, UpstreamCannotContinue, UpstreamError
from w2s.proxy.core.rendering import render
from w2s.proxy.core.types import Chunk, FinishReason, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers.openai")

MODES = ("completions", "chat-continue", "chat-only")
DEFAULT_MAX_N = 128  # the OpenAI API's limit on n
MAX_API_STOPS = 4  # OpenAI accepts at most 4 stop strings; the rest are applied here
MAX_SEED = 2**63  # seeds are int64 on the wire
REDRAW_SEED_STRIDE = 7919  # a redrawn call's seed: away from the seeds plan_calls hands out
# vLLM's flags for continuing a trailing assistant message (also TGI, tabbyAPI).
CONTINUE_FLAGS = {"continue_final_message": True, "add_generation_prompt": False}

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "stop",
                                    "tool_calls": "stop", "function_call": "stop"}


@dataclass
class _Call:
    """One HTTP request: `n` draws continuing `prefix`."""

    indices: list[int]
    prefix: str
    max_tokens: int | None
    seed: int | None

    @property
    def n(self) -> int:
        return len(self.indices)


@dataclass
class _Ctx:
    """One sample call: the request as sent, and what happened on the way."""

    request: SampleRequest
    rendered: str  # completions mode: the prompt text (the prefix follows it)
    api_stops: list[str]
    stops: list[str]  # every stop string, also cut here
    calls: int = 0  # HTTP requests made (redraws included)
    notes: set[str] = field(default_factory=set)


@dataclass
class _Drawn:
    """A parsed response, before token accounting."""

    texts: list[str]
    finishes: list[FinishReason]
    prompt_tokens: int | None
    completion_tokens: int | None


def plan_calls(request: SampleRequest, max_n: int) -> list[_Call]:
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
            calls.append(_Call(idx[start:start + max_n], prefix, max_tokens, seed))
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


class OpenAISampler:
    model_names: tuple[str, ...] = ()  # nothing to load locally

    def __init__(self, name: str, cfg: UpstreamConfig, *, retry_policy: RetryPolicy | None = None,
                 client: sdk.AsyncOpenAI | None = None):
        mode = cfg.mode or "completions"
        if mode not in MODES:
            raise ConfigError(f"upstreams.{name}.mode: must be one of {', '.join(MODES)}")
        self.name = name
        self.cfg = cfg
        self.mode = mode
        self.exact_continuation = mode != "chat-only"
        self.max_n = cfg.max_n if cfg.max_n is not None else DEFAULT_MAX_N
        if self.max_n < 1:
            raise ConfigError(f"upstreams.{name}.max_n: must be >= 1")
        self.n_learned = False  # max_n found by a short answer, not configured
        if cfg.chat_template is not None and mode != "completions":
            raise ConfigError(f"upstreams.{name}.chat_template: only for mode: completions (chat modes send messages)")
        self.chat_template = load_chat_template(cfg.chat_template, name) if cfg.chat_template else None
        self._secret = resolve_secret(cfg.api_key)
        self.client = client or sdk.AsyncOpenAI(
            base_url=cfg.base_url, api_key=self._secret or "none", max_retries=0, timeout=cfg.timeout)
        self.policy = retry_policy or RetryPolicy(max_retries=cfg.max_retries)
        self.limiter = Limiter(cfg.concurrency, cfg.requests_per_minute, cfg.timeout)
        self.stats = RetryStats()
        self._errs = SDKErrors.of(sdk)
        self._encoding_name = tokens.encoding_name(cfg.model, cfg.tokenizer)
        self._label = f"upstream {name!r} (openai {mode})"
        verify = cfg.verify_continuation if cfg.verify_continuation is not None else mode == "chat-continue"
        self.continuation = ContinuationCheck(self._label) if verify and mode != "chat-only" else None

    @classmethod
    def from_config(cls, name: str, cfg: UpstreamConfig, pool=None, **kw) -> "OpenAISampler":
        return cls(name, cfg, **kw)

    async def start(self) -> None:
        pass  # remote: nothing to load; failures surface on the first request

    async def prepare(self, continuation: bool) -> None:
        """Before a search that will continue partial answers: the continuation probe, once."""
        if not continuation or self.continuation is None or not self.exact_continuation:
            return
        if await self.continuation.ensure(self._sample):
            return
        if self.cfg.on_no_continuation == "fail":
            raise UpstreamCannotContinue(
                f"{self._label} does not continue a partial answer ({self.continuation.detail}), so CBS cannot "
                f"run on it. Fix: a server that continues a trailing assistant message (vLLM: "
                f"continue_final_message), mode: completions, or on_no_continuation: bon-approx (guided "
                f"Best-of-N) in upstreams.{self.name}", provider=self.name)
        self.exact_continuation = False  # every later search: whole answers, labelled bon-approx
        log.warning("%s: no exact continuation; its routes run guided Best-of-N (bon-approx)", self._label)

    def capabilities(self) -> dict[str, Any]:
        """What this upstream was found to do (shown in /v1/models, /metrics and the trace)."""
        return {
            "max_n": self.max_n,
            "max_n_source": "learned" if self.n_learned else ("config" if self.cfg.max_n else "default"),
            "continuation": ("none (chat-only)" if self.mode == "chat-only" else
                             "not probed" if self.continuation is None else self.continuation.state),
        }

    async def probe(self) -> None:
        """A cheap call that proves the upstream answers (GET /v1/models); raises if it does not."""
        await self.client.models.list()

    async def aclose(self) -> None:
        await self.client.close()

    # -- sampling ----------------------------------------------------------
    async def sample(self, request: SampleRequest) -> SampleResult:
        request = request.fold_prefill()
        if self.mode == "chat-only" and any(c.prefix for c in request.continuations):
            raise InvalidRequest(f"{self._label} cannot continue a partial answer (chat-only mode); "
                                 "only whole answers can be drawn")
        return await self._sample(request)

    async def _sample(self, request: SampleRequest) -> SampleResult:
        stops = list(dict.fromkeys(s for s in (*request.stop, *self.cfg.stop) if s))
        ctx = _Ctx(request, "", split_stops(stops)[0], stops)
        if self.mode == "completions":
            rendered = render(request.prompt, None, self.cfg.template, chat_template=self.chat_template,
                              strict=self.name)
            ctx.rendered = rendered.text
            ctx.notes.update(f"{self._label}: its template has no place for the {d}; it was not sent"
                             for d in rendered.dropped)
        if self.continuation is not None and self.continuation.state == "failed":
            ctx.notes.add(f"{self._label} does not continue a partial answer ({self.continuation.detail}): "
                          "whole answers only, guided Best-of-N (bon-approx)")
        calls = plan_calls(request, self.max_n)
        if self.n_learned and any(c.n == self.max_n for c in calls) and len(calls) > len(
                {(c.prefix, c.max_tokens) for c in calls}):
            ctx.notes.add(f"{self._label} ignores n beyond {self.max_n}: draws are separate calls")
        chunks = await draw_all([(c.indices, lambda c=c: self._draw(ctx, c)) for c in calls],
                                len(request.continuations))
        return SampleResult(chunks=chunks, calls=ctx.calls, exact=self.exact_continuation,
                            notes=tuple(sorted(ctx.notes)))

    async def _draw(self, ctx: _Ctx, call: _Call) -> list[Chunk]:
        """One call's chunks; draws a short answer withheld are drawn again (`_redraw`)."""
        ctx.calls += 1
        drawn = await call_with_retry(
            lambda: self.limiter.run(lambda: self._request(ctx.request, call, ctx.rendered, ctx.api_stops)),
            policy=self.policy, errs=self._errs, label=self._label, provider=self.name,
            stats=self.stats, secrets=(self._secret,))
        chunks = await self._account(drawn, call, ctx)
        if len(chunks) < call.n:
            chunks += await self._redraw(ctx, call, len(chunks))
        return chunks

    async def _redraw(self, ctx: _Ctx, call: _Call, got: int) -> list[Chunk]:
        """A server that ignores or caps n: remember its limit, draw the rest now as parallel calls."""
        if got < self.max_n:
            self.max_n, self.n_learned = got, True
            log.warning("%s returned %d choice(s) for n=%d: it ignores or caps n; drawing with n <= %d "
                        "from now on (max_n: %d in its config says so up front)", self._label, got, call.n, got, got)
        ctx.notes.add(f"{self._label} returned {got} of {call.n} choices for n={call.n}: "
                      f"the rest were drawn as separate calls (its n limit: {self.max_n})")
        missing = call.indices[got:]
        subs = [_Call(missing[i:i + self.max_n], call.prefix, call.max_tokens,
                      None if call.seed is None else (call.seed + REDRAW_SEED_STRIDE * (j + 1)) % MAX_SEED)
                for j, i in enumerate(range(0, len(missing), self.max_n))]
        parts = await asyncio.gather(*(self._draw(ctx, sub) for sub in subs), return_exceptions=True)
        out: list[Chunk] = []
        for sub, part in zip(subs, parts):
            if isinstance(part, UpstreamError):
                out += [Chunk(error=part.message) for _ in range(sub.n)]  # lost: the search counts them
            elif isinstance(part, BaseException):
                raise part
            else:
                out += part
        return out

    def _params(self, request: SampleRequest, call: _Call, api_stops: list[str]) -> dict:
        kw: dict = {"model": self.cfg.model, "temperature": request.temperature}
        if call.n > 1:  # never sent when max_n == 1: such servers reject or ignore n
            kw["n"] = call.n
        if api_stops:
            kw["stop"] = api_stops
        if request.top_p != 1.0:  # some models reject any top_p; 1.0 is everyone's default
            kw["top_p"] = request.top_p
        if call.seed is not None:
            kw["seed"] = call.seed
        return kw

    def _extra_body(self, request: SampleRequest, call: _Call) -> dict:
        extra = dict(self.cfg.extra_body)
        if self.mode == "chat-continue":
            if call.prefix:
                extra = {**CONTINUE_FLAGS, **extra}
            else:  # nothing to continue: a plain chat request
                extra = {k: v for k, v in extra.items() if k not in CONTINUE_FLAGS}
        if request.top_k is not None:  # not an OpenAI field: vLLM and llama.cpp read it from the body
            extra["top_k"] = request.top_k
        return extra

    def _messages(self, request: SampleRequest, call: _Call) -> list[dict]:
        messages = request.prompt.as_messages()
        if call.prefix:
            messages.append({"role": "assistant", "content": call.prefix})
        return messages

    async def _request(self, request: SampleRequest, call: _Call, rendered: str, api_stops: list[str]) -> _Drawn:
        kw = self._params(request, call, api_stops)
        extra = self._extra_body(request, call) or None
        if self.mode == "completions":
            # None (no limit) leaves max_tokens to the server: vLLM runs to the
            # context end, OpenAI itself stops at 16. The search always sets one.
            if call.max_tokens is not None:
                kw["max_tokens"] = call.max_tokens
            resp = await self.client.completions.create(prompt=rendered + call.prefix, extra_body=extra, **kw)
            return _parse(resp, call.n, chat=False)
        if call.max_tokens is not None:
            # OpenAI chat models want max_completion_tokens; OpenAI-compatible
            # servers all read the older max_tokens.
            kw["max_completion_tokens" if self.mode == "chat-only" else "max_tokens"] = call.max_tokens
        resp = await self.client.chat.completions.create(messages=self._messages(request, call),
                                                         extra_body=extra, **kw)
        return _parse(resp, call.n, chat=True)

    # -- usage ---------------------------------------------------------------
    async def _account(self, drawn: _Drawn, call: _Call, ctx: _Ctx) -> list[Chunk]:
        """The returned choices as chunks, with per-choice usage whose sums equal the API's totals.

        The API bills a request once: its prompt tokens are split evenly over
        the n choices, its completion tokens in proportion to each choice's
        length (a choice cut by max_tokens wrote exactly max_tokens). With no
        usage in the response, tiktoken estimates both (and the notes say so).
        """
        n = len(drawn.texts)
        counted = call.max_tokens is None or any(f != "length" for f in drawn.finishes)
        enc = None
        if drawn.completion_tokens is None or drawn.prompt_tokens is None or (n > 1 and counted):
            enc = await tokens.load_encoding(self._encoding_name)
        if drawn.completion_tokens is None or drawn.prompt_tokens is None:
            ctx.notes.add(f"{self._label} reported no usage: token counts are tiktoken estimates")

        def length(i: int) -> int:
            if drawn.finishes[i] == "length" and call.max_tokens is not None:
                return call.max_tokens
            return tokens.count(enc, drawn.texts[i])

        if drawn.completion_tokens is None:
            completion = [tokens.count(enc, t) for t in drawn.texts]
        elif n == 1:
            completion = [drawn.completion_tokens]
        else:
            completion = tokens.split_total(drawn.completion_tokens, [length(i) for i in range(n)])

        prompt_total = drawn.prompt_tokens
        if prompt_total is None:
            if self.mode == "completions":
                prompt_total = tokens.count(enc, ctx.rendered + call.prefix)
            else:
                prompt_total = tokens.count_messages(enc, self._messages(ctx.request, call))
        prompt = tokens.split_total(prompt_total, [1] * n)

        chunks = []
        for i in range(n):
            # Every stop string is cut here too: the API takes at most 4, and some servers leave it in.
            text, finish = cut_at_stops(drawn.texts[i], drawn.finishes[i], ctx.stops)
            if len(text) < len(drawn.texts[i]) and any(s in drawn.texts[i] for s in ctx.api_stops):
                ctx.notes.add(f"{self._label} left a stop string in its text: cut here")
            chunks.append(Chunk(text=text, finish_reason=finish, completion_tokens=completion[i],
                                prompt_tokens=prompt[i]))
        return chunks


def _finish(reason) -> FinishReason:
    if reason is None:
        return "stop"
    got = _FINISH.get(str(reason))
    if got is None:
        log.debug("unknown finish_reason %r treated as stop", reason)
        return "stop"
    return got


def _parse(resp, n: int, *, chat: bool) -> _Drawn:
    """Read a (chat) completion; a body of the wrong shape is a MalformedResponse (retried)."""
    try:
        choices = sorted(resp.choices, key=lambda c: c.index or 0)[:n]
        if not choices:
            raise MalformedResponse("no choices")
        texts = [(c.message.content or "") if chat else (c.text or "") for c in choices]
        finishes = [_finish(c.finish_reason) for c in choices]
        usage = getattr(resp, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    except (AttributeError, TypeError, ValueError) as e:
        raise MalformedResponse(type(e).__name__) from None
    if not all(isinstance(t, str) for t in texts):
        raise MalformedResponse("choice text is not a string")
    return _Drawn(texts, finishes, _int_or_none(prompt), _int_or_none(completion))


def _int_or_none(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
