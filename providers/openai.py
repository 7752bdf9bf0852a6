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
split into several when `n` exceeds the server's `max_n`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import openai as sdk

from providers import tokens
from providers.limits import Limiter
from providers.retry import Draw, MalformedResponse, RetryPolicy, RetryStats, SDKErrors, call_with_retry, draw_all
from proxy.core.config import UpstreamConfig, resolve_secret
from proxy.core.errors import ConfigError, InvalidRequest
from proxy.core.rendering import render
from proxy.core.types import Chunk, FinishReason, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers.openai")

MODES = ("completions", "chat-continue", "chat-only")
DEFAULT_MAX_N = 128  # the OpenAI API's limit on n
MAX_API_STOPS = 4  # OpenAI accepts at most 4 stop strings; the rest are applied here
MAX_SEED = 2**63  # seeds are int64 on the wire
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
        self._secret = resolve_secret(cfg.api_key)
        self.client = client or sdk.AsyncOpenAI(
            base_url=cfg.base_url, api_key=self._secret or "none", max_retries=0, timeout=cfg.timeout)
        self.policy = retry_policy or RetryPolicy(max_retries=cfg.max_retries)
        self.limiter = Limiter(cfg.concurrency, cfg.requests_per_minute, cfg.timeout)
        self.stats = RetryStats()
        self._errs = SDKErrors.of(sdk)
        self._encoding_name = tokens.encoding_name(cfg.model, cfg.tokenizer)
        self._label = f"upstream {name!r} (openai {mode})"
        self._warned_n = False

    @classmethod
    def from_config(cls, name: str, cfg: UpstreamConfig, pool=None, **kw) -> "OpenAISampler":
        return cls(name, cfg, **kw)

    async def start(self) -> None:
        pass  # remote: nothing to load; failures surface on the first request

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
        api_stops, local_stops = split_stops(list(request.stop) + list(self.cfg.stop))
        rendered = render(request.prompt, None, self.cfg.template).text if self.mode == "completions" else ""
        calls = plan_calls(request, self.max_n)

        def draw(call: _Call) -> Draw:
            async def run() -> list[Chunk]:
                drawn = await call_with_retry(
                    lambda: self.limiter.run(lambda: self._request(request, call, rendered, api_stops)),
                    policy=self.policy, errs=self._errs, label=self._label, provider=self.name,
                    stats=self.stats, secrets=(self._secret,))
                return await self._account(drawn, call, request, rendered, local_stops)
            return call.indices, run

        chunks = await draw_all([draw(c) for c in calls], len(request.continuations))
        return SampleResult(chunks=chunks, calls=len(calls), exact=self.exact_continuation)

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
    async def _account(self, drawn: _Drawn, call: _Call, request: SampleRequest, rendered: str,
                       local_stops: list[str]) -> list[Chunk]:
        """Per-choice usage whose sums equal the API's totals.

        The API bills a request once: its prompt tokens are split evenly over
        the n choices, its completion tokens in proportion to each choice's
        length (a choice cut by max_tokens wrote exactly max_tokens). With no
        usage in the response, tiktoken estimates both.
        """
        n = len(drawn.texts)
        counted = call.max_tokens is None or any(f != "length" for f in drawn.finishes)
        enc = None
        if drawn.completion_tokens is None or drawn.prompt_tokens is None or (n > 1 and counted):
            enc = await tokens.load_encoding(self._encoding_name)

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
                prompt_total = tokens.count(enc, rendered + call.prefix)
            else:
                prompt_total = tokens.count_messages(enc, self._messages(request, call))
        prompt = tokens.split_total(prompt_total, [1] * n)

        chunks = []
        for i in range(n):
            text, finish = cut_at_stops(drawn.texts[i], drawn.finishes[i], local_stops)
            chunks.append(Chunk(text=text, finish_reason=finish, completion_tokens=completion[i],
                                prompt_tokens=prompt[i]))
        if n < call.n:
            # A server that ignores `n` answers once: keep that draw, fail the rest.
            if not self._warned_n:
                self._warned_n = True
                log.warning("%s returned %d choice(s) for n=%d; set max_n: 1 if it does not support n",
                            self._label, n, call.n)
            missing = f"{self._label}: returned {n} of {call.n} choices (set max_n: 1 if it has no n)"
            chunks += [Chunk(error=missing) for _ in range(call.n - n)]
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
