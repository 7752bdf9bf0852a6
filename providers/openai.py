"""OpenAI and OpenAI-compatible upstreams (OpenAI, vLLM, llama.cpp, Ollama...): one class per way of drawing.

* `CompletionsSampler` (``mode: completions``, the default): POST /v1/completions
  with the rendered prompt plus the partial answer as raw text. Exact continuation.
* `ChatContinueSampler` (``mode: chat-continue``): chat completions ending in the
  partial assistant message, with the server's continue flags (vLLM:
  ``continue_final_message``). Exact, as far as the server's chat template allows.
* `ChatOnlySampler` (``mode: chat-only``): OpenAI chat models, which cannot
  continue a partial answer. Only whole answers are drawn (guided Best-of-N).

What they share lives in `OpenAISampler`: identical continuations (same prefix
and length) share one request with `n`, split into several when `n` exceeds the
server's `max_n`. A server that ignores or caps `n` is found on its first short
answer: the missing draws are drawn at once as separate parallel calls, and its
limit is remembered (and reported). Accounting is in providers/openai_draws.py.

Real servers differ from their docs, so nothing is trusted that a probe has not
shown: continuation is probed before CBS relies on it (providers/continuation.py),
stop strings are cut here too, and usage is estimated when missing. Each
workaround is said in the response's notes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import openai as sdk

from w2s.providers import tokens
from w2s.providers.chat_templates import load_chat_template
from w2s.providers.continuation import ContinuationCheck, Outcome, probe_once
from w2s.providers.openai_draws import (
    Call,
    Ctx,
    Drawn,
    chunks_of,
    completion_counts,
    needs_encoding,
    parse,
    plan_calls,
    split_stops,
)
from w2s.providers.remote import RemoteSampler
from w2s.providers.retry import draw_all
from w2s.providers.tool_shapes import Shapes
from w2s.proxy.core.errors import InvalidRequest, UpstreamCannotContinue, UpstreamError, UpstreamRefused
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.rendering import render
from w2s.proxy.core.types import Chunk, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers.openai")

DEFAULT_MAX_N = 128  # the OpenAI API's limit on n
REDRAW_SEED_STRIDE = 7919  # a redrawn call's seed: away from the seeds plan_calls hands out
# vLLM's flags for continuing a trailing assistant message (also TGI, tabbyAPI).
CONTINUE_FLAGS = {"continue_final_message": True, "add_generation_prompt": False}
# How chat APIs mark a trailing assistant message to continue, in the order `continuation: auto` tries
# them: vLLM's flags, DeepSeek/Mistral's "prefix": true, Kimi/Qwen's "partial": true, a plain message.
STYLES = ("vllm", "prefix", "partial", "plain")


class OpenAISampler(RemoteSampler):
    """What the three OpenAI ways of drawing share: n, redraws, usage, the continuation probe."""

    exact_continuation = True
    verify_by_default = False  # probe continuation before CBS when the config does not say

    def __init__(self, name: str, cfg: Any, *, retry_policy=None, client: sdk.AsyncOpenAI | None = None):
        super().__init__(name, cfg, sdk, client=client, retry_policy=retry_policy, encoding_model=cfg.model)
        self.max_n = cfg.max_n if cfg.max_n is not None else DEFAULT_MAX_N
        self.n_learned = False  # max_n found by a short answer, not configured
        verify = getattr(cfg, "verify_continuation", None)
        verify = self.verify_by_default if verify is None else verify
        self.continuation = ContinuationCheck(self._label) if verify and self.exact_continuation else None

    @staticmethod
    def _client_class(sdk_module):
        return sdk_module.AsyncOpenAI

    def describe(self) -> str:
        return f"openai {self.draw_mode}"

    @classmethod
    def from_config(cls, name: str, cfg: Any, pool=None, **kw) -> "OpenAISampler":
        """The sampler for the config's mode (subclasses: that one)."""
        target = cls if cls is not OpenAISampler else _BY_MODE[cfg.draw_mode]
        return target(name, cfg, **kw)

    async def prepare(self, continuation: bool) -> None:
        """Before a search that will continue partial answers: the continuation probe, once."""
        if not continuation or self.continuation is None or not self.exact_continuation:
            return
        if await self.continuation.ensure(self._probe):
            return
        if self.cfg.on_no_continuation == "fail":
            raise UpstreamCannotContinue(
                f"{self._label} does not continue a partial answer ({self.continuation.detail}), so CBS cannot "
                f"run on it. Fix: a server that continues a trailing assistant message (vLLM: "
                f"continue_final_message), mode: completions, or on_no_continuation: bon-approx (guided "
                f"Best-of-N) in upstreams.{self.name}", provider=self.name)
        self.exact_continuation = False  # every later search: whole answers, labelled bon-approx
        log.warning("%s: no exact continuation; its routes run guided Best-of-N (bon-approx)", self._label)

    async def _probe(self) -> Outcome:
        """The continuation probe through this sampler's own path."""
        return await probe_once(self._sample)

    def capabilities(self) -> dict[str, Any]:
        """What this upstream was found to do (shown in /v1/models, /health, /metrics and the trace)."""
        return {
            "max_n": self.max_n,
            "max_n_source": "learned" if self.n_learned else ("config" if self.cfg.max_n else "default"),
            **self._continuation_report(),
        }

    def _continuation_report(self) -> dict[str, Any]:
        return {"continuation": "not probed"} if self.continuation is None else self.continuation.report()

    # -- sampling ----------------------------------------------------------
    async def sample(self, request: SampleRequest) -> SampleResult:
        return await self._sample(request.fold_prefill())

    def context(self, request: SampleRequest) -> Ctx:
        """The per-call state: stop strings (the API takes 4, the rest are cut here)."""
        stops = list(dict.fromkeys(s for s in (*request.stop, *self.cfg.stop) if s))
        return Ctx(request, split_stops(stops)[0], stops)

    async def _sample(self, request: SampleRequest) -> SampleResult:
        ctx = self.context(request)
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

    async def _draw(self, ctx: Ctx, call: Call) -> list[Chunk]:
        """One call's chunks; draws a short answer withheld are drawn again (`_redraw`)."""
        ctx.calls += 1
        drawn = await self.call(lambda: self._request(ctx, call))
        chunks = await self._account(drawn, call, ctx)
        if len(chunks) < call.n:
            chunks += await self._redraw(ctx, call, len(chunks))
        return chunks

    async def _redraw(self, ctx: Ctx, call: Call, got: int) -> list[Chunk]:
        """A server that ignores or caps n: remember its limit, draw the rest now as parallel calls."""
        if got < self.max_n:
            self.max_n, self.n_learned = got, True
            log.warning("%s returned %d choice(s) for n=%d: it ignores or caps n; drawing with n <= %d "
                        "from now on (max_n: %d in its config says so up front)", self._label, got, call.n, got, got)
        ctx.notes.add(f"{self._label} returned {got} of {call.n} choices for n={call.n}: "
                      f"the rest were drawn as separate calls (its n limit: {self.max_n})")
        missing = call.indices[got:]
        subs = [Call(missing[i:i + self.max_n], call.prefix, call.max_tokens,
                     None if call.seed is None else (call.seed + REDRAW_SEED_STRIDE * (j + 1)) % 2**63)
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

    # -- one request -------------------------------------------------------------
    def params(self, request: SampleRequest, call: Call, api_stops: list[str]) -> dict:
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

    def extra_body(self, request: SampleRequest, call: Call) -> dict:
        extra = dict(self.cfg.extra_body)
        if request.top_k is not None:  # not an OpenAI field: vLLM and llama.cpp read it from the body
            extra["top_k"] = request.top_k
        return extra

    async def _request(self, ctx: Ctx, call: Call) -> Drawn:
        raise NotImplementedError

    def _prompt_estimate(self, enc, ctx: Ctx, call: Call) -> int:
        raise NotImplementedError

    async def _account(self, drawn: Drawn, call: Call, ctx: Ctx) -> list[Chunk]:
        """The returned choices as chunks, with per-choice usage whose sums equal the API's totals."""
        enc = await self.encoding() if needs_encoding(drawn, call) else None
        if not drawn.has_usage:
            ctx.notes.add(f"{self._label} reported no usage: token counts are tiktoken estimates")
        prompt_total = drawn.prompt_tokens
        if prompt_total is None:
            prompt_total = self._prompt_estimate(enc, ctx, call)
        return chunks_of(drawn, ctx, completion_counts(drawn, call, enc), prompt_total, self._label)


class CompletionsSampler(OpenAISampler):
    """POST /v1/completions: the rendered prompt plus the partial answer, continued as raw text."""

    draw_mode = DrawMode.COMPLETIONS

    def __init__(self, name: str, cfg: Any, **kw):
        super().__init__(name, cfg, **kw)
        self.chat_template = load_chat_template(cfg.chat_template, name) if cfg.chat_template else None

    def context(self, request: SampleRequest) -> Ctx:
        ctx = super().context(request)
        rendered = render(request.prompt, None, self.cfg.template, chat_template=self.chat_template, strict=self.name)
        ctx.rendered = rendered.text
        ctx.notes.update(f"{self._label}: its template has no place for the {d}; it was not sent"
                         for d in rendered.dropped)
        return ctx

    async def _request(self, ctx: Ctx, call: Call) -> Drawn:
        kw = self.params(ctx.request, call, ctx.api_stops)
        # None (no limit) leaves max_tokens to the server: vLLM runs to the
        # context end, OpenAI itself stops at 16. The search always sets one.
        if call.max_tokens is not None:
            kw["max_tokens"] = call.max_tokens
        resp = await self.client.completions.create(prompt=ctx.rendered + call.prefix,
                                                    extra_body=self.extra_body(ctx.request, call) or None, **kw)
        return parse(resp, call.n, chat=False)

    def _prompt_estimate(self, enc, ctx: Ctx, call: Call) -> int:
        return tokens.count(enc, ctx.rendered + call.prefix)


class _ChatSampler(OpenAISampler):
    """Chat completions: the conversation as messages, then the partial answer if any.

    Tools and `response_format` go in the shape the server was found to take (providers/tool_shapes.py)."""

    max_tokens_field = "max_tokens"  # what OpenAI-compatible servers all read
    tool_api = True  # `tools` are forwarded (Engine.plan_prompt refuses them to upstreams without)

    def __init__(self, name: str, cfg: Any, **kw):
        super().__init__(name, cfg, **kw)
        self.shapes = Shapes(self._label)

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), **self.shapes.report()}

    def messages(self, request: SampleRequest, call: Call) -> list[dict]:
        messages = request.prompt.as_messages()
        if call.prefix:
            messages.append({"role": "assistant", "content": call.prefix})
        return messages

    async def _request(self, ctx: Ctx, call: Call) -> Drawn:
        kw = self.params(ctx.request, call, ctx.api_stops)
        if call.max_tokens is not None:
            kw[self.max_tokens_field] = call.max_tokens
        prompt = ctx.request.prompt
        messages = self.shapes.messages(self.messages(ctx.request, call), prompt)
        resp = await self.client.chat.completions.create(
            messages=messages, extra_body=self.extra_body(ctx.request, call) or None, **kw,
            **self.shapes.fields(prompt))
        drawn = parse(resp, call.n, chat=True)
        read = [self.shapes.read(t, drawn.calls[i] if drawn.calls else (), prompt) for i, t in enumerate(drawn.texts)]
        drawn.texts, drawn.calls = [t for t, _ in read], [c for _, c in read]
        return drawn

    async def _draw(self, ctx: Ctx, call: Call) -> list[Chunk]:
        """A 400 for a tool or format shape moves this upstream to the next shape, and the draw is repeated."""
        sent = self.shapes.fields(ctx.request.prompt)
        try:
            chunks = await super()._draw(ctx, call)
        except UpstreamRefused as e:
            said = self.shapes.adapt(e, ctx.request.prompt, sent) if sent or ctx.request.prompt.tools else None
            if said is None:
                raise
            log.warning("%s", said)
            ctx.notes.add(said)
            return await self._draw(ctx, call)
        said = self.shapes.misfit([c.tool_calls for c in chunks], ctx.request.prompt)
        if said is None:
            return chunks
        log.warning("%s", said)
        ctx.notes.add(said)
        return await self._draw(ctx, call)

    def _prompt_estimate(self, enc, ctx: Ctx, call: Call) -> int:
        return tokens.count_messages(enc, self.messages(ctx.request, call))


class ChatContinueSampler(_ChatSampler):
    """Chat completions ending in the partial assistant message, marked the way the server wants (`STYLES`).

    `continuation: auto` tries each style with the continuation probe, in order, and keeps the first
    that passes; a style the server rejects outright (a 400 for an unknown field) counts as "does not
    continue", not as an upstream failure. A server that repeats the partial answer before continuing
    has the repeat cut from every draw.
    """

    draw_mode = DrawMode.CHAT_CONTINUE
    verify_by_default = True  # servers that start a new turn instead are common

    def __init__(self, name: str, cfg: Any, **kw):
        super().__init__(name, cfg, **kw)
        self.styles = STYLES if cfg.continuation == "auto" else (cfg.continuation,)
        # Until probed (or with verify_continuation: false) auto sends vLLM's flags, as before styles.
        self.style = self.styles[0]
        self.repeats_prefix = False
        self.tried: list[str] = []  # each style's verdict, for /v1/models and `w2s check`

    def messages(self, request: SampleRequest, call: Call) -> list[dict]:
        messages = super().messages(request, call)
        if call.prefix and self.style in ("prefix", "partial"):
            messages[-1] = {**messages[-1], self.style: True}
        return messages

    def extra_body(self, request: SampleRequest, call: Call) -> dict:
        extra = super().extra_body(request, call)
        if call.prefix and self.style == "vllm":
            return {**CONTINUE_FLAGS, **extra}
        return {k: v for k, v in extra.items() if k not in CONTINUE_FLAGS}  # another style, or nothing to continue

    async def _request(self, ctx: Ctx, call: Call) -> Drawn:
        drawn = await super()._request(ctx, call)
        if self.repeats_prefix and call.prefix:
            drawn.texts = [self._cut_repeat(t, call.prefix, ctx) for t in drawn.texts]
        return drawn

    def _cut_repeat(self, text: str, prefix: str, ctx: Ctx) -> str:
        if text.startswith(prefix):
            return text[len(prefix):]
        ctx.notes.add(f"{self._label} usually repeats the partial answer first; a reply did not, and was taken "
                      "as is")
        return text

    async def _probe(self) -> Outcome:
        """Each style in turn until one continues; the total cost of the styles tried."""
        total = Outcome(False, "")
        self.tried = []
        for style in self.styles:
            out = await self.probe_style(style)
            total.add_cost(out)
            self.tried.append(f"{style}: {out.detail}")
            if out.ok:
                self.style, self.repeats_prefix = style, out.repeats
                out.calls, out.prompt_tokens, out.completion_tokens = total.calls, total.prompt_tokens, \
                    total.completion_tokens
                out.style = style
                return out
        self.style = self.styles[0]
        total.detail = "; ".join(self.tried)
        return total

    async def probe_style(self, style: str) -> Outcome:
        """The probe with the partial answer marked as `style` (the sampler's style is left at `style`)."""
        self.style, self.repeats_prefix = style, False
        try:
            return await probe_once(self._sample)
        except UpstreamRefused as e:
            if e.upstream_status not in (400, 404, 422):
                raise
            return Outcome(False, f"refused (HTTP {e.upstream_status}: {e.message[:120]})", calls=1)

    def _continuation_report(self) -> dict[str, Any]:
        report = super()._continuation_report()
        verified = self.continuation is not None and self.continuation.state == "verified"
        report["continuation_style"] = self.style if verified or len(self.styles) == 1 else f"{self.style} (unprobed)"
        if self.tried:
            report["styles_tried"] = list(self.tried)
        return report


class ChatOnlySampler(_ChatSampler):
    """OpenAI chat models: whole answers only (the search runs guided Best-of-N, bon-approx)."""

    draw_mode = DrawMode.CHAT_ONLY
    exact_continuation = False
    max_tokens_field = "max_completion_tokens"  # OpenAI's own chat models want this one

    def _continuation_report(self) -> dict[str, Any]:
        return {"continuation": "none (chat-only)"}

    async def sample(self, request: SampleRequest) -> SampleResult:
        request = request.fold_prefill()
        if any(c.prefix for c in request.continuations):
            raise InvalidRequest(f"{self._label} cannot continue a partial answer (chat-only mode); "
                                 "only whole answers can be drawn")
        return await self._sample(request)


_BY_MODE: dict[DrawMode, type[OpenAISampler]] = {
    s.draw_mode: s for s in (CompletionsSampler, ChatContinueSampler, ChatOnlySampler)}
