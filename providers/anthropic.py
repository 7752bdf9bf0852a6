"""Anthropic Messages API upstream: continuation by assistant prefill.

The partial answer is sent as a final assistant message, which the model
continues. The API has no `n`, so K candidates are K parallel requests; the
shared prefix (system + conversation) is marked for prompt caching so the K
copies are cheap.

Prefill cannot end in whitespace, so trailing whitespace is stripped from it
and, if the model's text starts with that same whitespace, removed from the
text: the chunk is then exactly what follows the original prefix. If the text
starts otherwise, it is returned as is (the model chose not to re-emit the
whitespace; nothing better than its own text is known), so the boundary keeps
the prefix's whitespace followed by the model's text.

Claude 4.6 and later refuse prefill with a 400. The first refusal switches the
sampler to whole answers only (exact_continuation=False: later searches run
guided Best-of-N) with a warning, and no prefill is sent again. A draw that
needed prefill is then drawn as a whole fresh answer (same max_tokens) and the
result says exact=False, which the search takes as "these are whole answers".
Likewise Opus 4.7+ refuse temperature/top_p/top_k: the first refusal stops
sending them (with a warning) and the draw is repeated without them.
"""
from __future__ import annotations

import logging

import anthropic as sdk

from w2s.providers import anthropic_tools, tokens
from w2s.providers.continuation import ContinuationCheck, probe_once
from w2s.providers.remote import RemoteSampler
from w2s.providers.retry import Draw, MalformedResponse, RetryPolicy, draw_all
from w2s.proxy.core.config import AnthropicUpstream
from w2s.proxy.core.errors import UpstreamCannotContinue, UpstreamError, UpstreamRefused
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.types import Chunk, Continuation, FinishReason, Prompt, SampleRequest, SampleResult, content_text

log = logging.getLogger("w2s.providers.anthropic")

# max_tokens is required by the API; used only for a continuation with no limit.
DEFAULT_MAX_TOKENS = 4096
_PREFILL_REFUSAL_MARKS = ("prefill", "must end with a user message")
_SAMPLING_FIELDS = ("temperature", "top_p", "top_k")

_STOP: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "stop",
                                  "model_context_window_exceeded": "length"}


def is_prefill_refusal(err: UpstreamError) -> bool:
    msg = err.message.lower()
    return (isinstance(err, UpstreamRefused) and err.upstream_status == 400
            and any(m in msg for m in _PREFILL_REFUSAL_MARKS))


def is_sampling_refusal(err: UpstreamError) -> bool:
    """Opus 4.7+ answer 400 to any sampling control ("`temperature` is deprecated for this model")."""
    msg = err.message.lower()
    return (isinstance(err, UpstreamRefused) and err.upstream_status == 400
            and any(f in msg for f in _SAMPLING_FIELDS)
            and any(w in msg for w in ("deprecated", "not supported", "unsupported", "removed")))


def split_prefill(prefix: str) -> tuple[str, str]:
    """(prefill to send, trailing whitespace held back)."""
    kept = prefix.rstrip()
    return kept, prefix[len(kept):]


def restore_whitespace(text: str, held: str) -> str:
    """The continuation after the original prefix (see the module docstring)."""
    if held and text.startswith(held):
        return text[len(held):]
    return text


def build_messages(prompt: Prompt, prefill: str, cache: bool) -> tuple[str | None, list[dict]]:
    """(system, messages): the conversation as blocks (tool calls and results too), then the prefill if any."""
    turns = [anthropic_tools.turn(m) for m in prompt.as_messages()
             if m.get("role") not in ("system", "developer")]  # Anthropic takes the system prompt apart
    messages = anthropic_tools.merge([t for t in turns if t is not None])
    if cache and messages:
        # One breakpoint at the end of the shared prefix caches system + conversation.
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return anthropic_tools.system_with_format(prompt.system_text(), prompt), messages


class AnthropicSampler(RemoteSampler):
    draw_mode = DrawMode.ANTHROPIC_PREFILL
    tool_api = True  # client tools: tool_use / tool_result blocks (providers/anthropic_tools.py)

    def __init__(self, name: str, cfg: AnthropicUpstream, *, retry_policy: RetryPolicy | None = None,
                 client: sdk.AsyncAnthropic | None = None):
        # Claude's tokenizer is not public: usage estimates use the default encoding.
        super().__init__(name, cfg, sdk, client=client, retry_policy=retry_policy)
        self.exact_continuation = True  # until the model refuses prefill
        self.send_sampling = True  # until the model refuses temperature/top_p/top_k
        # Another vendor's Anthropic-compatible endpoint may take prefill and still start a new turn: probe it.
        verify = cfg.verify_continuation if cfg.verify_continuation is not None else cfg.base_url is not None
        self.continuation = ContinuationCheck(self._label) if verify else None

    @staticmethod
    def _client_class(sdk_module):
        return sdk_module.AsyncAnthropic

    def describe(self) -> str:
        return "anthropic"

    async def prepare(self, continuation: bool) -> None:
        """Before CBS: the prefill probe, once, where it is on (a refusal is also found by any draw)."""
        if not continuation or self.continuation is None or not self.exact_continuation:
            return
        if await self.continuation.ensure(lambda: probe_once(self.sample)):
            return
        if self.cfg.on_no_continuation == "fail":
            raise UpstreamCannotContinue(
                f"{self._label} does not continue a prefilled answer ({self.continuation.detail}), so CBS cannot "
                f"run on it. Fix: on_no_continuation: bon-approx (guided Best-of-N) in upstreams.{self.name}",
                provider=self.name)
        self._disable_prefill()

    def capabilities(self) -> dict:
        caps = {"continuation": "prefill" if self.exact_continuation else "refused (bon-approx)",
                "n": "K parallel calls (the API has no n)",
                "sampling_controls": "sent" if self.send_sampling else "refused"}
        if self.continuation is not None:
            caps["prefill_probe"] = self.continuation.report()
        return caps

    # -- sampling ----------------------------------------------------------
    async def sample(self, request: SampleRequest) -> SampleResult:
        request = request.fold_prefill()
        stops = list(dict.fromkeys(s for s in (*request.stop, *self.cfg.stop) if s))

        def draw(i: int, cont: Continuation) -> Draw:
            async def run() -> list[Chunk]:
                # No prefill once refused: the draw becomes a whole answer.
                prefix = cont.prefix if self.exact_continuation else ""
                prefill, held = split_prefill(prefix)
                system, messages = build_messages(request.prompt, prefill, self.cfg.prompt_cache)
                sampling_refused = False
                while True:  # each kind of refusal is handled at most once
                    try:
                        chunk, has_usage = await self._call(request, cont, system, messages, stops)
                        break
                    except UpstreamError as e:
                        if prefill and is_prefill_refusal(e):
                            self._disable_prefill()
                            prefill, held = "", ""
                            system, messages = build_messages(request.prompt, "", self.cfg.prompt_cache)
                        elif not sampling_refused and is_sampling_refusal(e):
                            sampling_refused = True
                            self._disable_sampling()
                        else:
                            raise
                chunk.text = restore_whitespace(chunk.text, held)
                if not has_usage:
                    await self._estimate(chunk, system, messages)
                return [chunk]
            return [i], run

        draws = [draw(i, c) for i, c in enumerate(request.continuations)]
        chunks = await draw_all(draws, len(draws))
        # Read after the draws: a refusal found during this call makes them whole answers.
        return SampleResult(chunks=chunks, calls=len(draws), exact=self.exact_continuation)

    async def _call(self, request: SampleRequest, cont: Continuation, system: str | None,
                    messages: list[dict], stops: list[str]) -> tuple[Chunk, bool]:
        return await self.call(lambda: self._request(request, cont, system, messages, stops))

    def _disable_sampling(self) -> None:
        if self.send_sampling:
            self.send_sampling = False
            log.warning("%s: model %s refuses sampling controls; candidates are drawn with the model's "
                        "default sampling (temperature/top_p/top_k not sent)", self._label, self.cfg.model)

    def _disable_prefill(self) -> None:
        if self.exact_continuation:  # K parallel draws all see the refusal: warn once
            self.exact_continuation = False
            log.warning("%s: model %s refuses assistant prefill; switching to guided Best-of-N "
                        "(whole answers, no exact continuation)", self._label, self.cfg.model)

    async def _request(self, request: SampleRequest, cont: Continuation, system: str | None,
                       messages: list[dict], stops: list[str]) -> tuple[Chunk, bool]:
        kw: dict = {
            "model": self.cfg.model,
            "max_tokens": cont.max_tokens if cont.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            kw["system"] = system
        if stops:
            kw["stop_sequences"] = stops
        kw.update(anthropic_tools.tool_fields(request.prompt.tools))
        # The SDK (2.x) no longer types the sampling controls, which Opus 4.7+
        # refuse; older models still take them in the body.
        extra = dict(self.cfg.extra_body)
        if self.send_sampling:
            extra["temperature"] = request.temperature
            if request.top_p != 1.0:  # 4.5-era models reject top_p together with temperature
                extra["top_p"] = request.top_p
            if request.top_k is not None:
                extra["top_k"] = request.top_k
        resp = await self.client.messages.create(**kw, extra_body=extra or None)
        return _parse(resp)

    async def _estimate(self, chunk: Chunk, system: str | None, messages: list[dict]) -> None:
        """No usage in the response: estimate both counts with tiktoken."""
        enc = await self.encoding()
        chunk.completion_tokens = tokens.count(enc, chunk.text)
        flat = [{"content": system or ""}] + [{"content": content_text(m["content"])} for m in messages]
        chunk.prompt_tokens = tokens.count_messages(enc, flat)


def _parse(resp) -> tuple[Chunk, bool]:
    """A Message as a Chunk, and whether the response carried usage."""
    try:
        text = "".join(b.text for b in resp.content if getattr(b, "type", None) == "text")
        calls = anthropic_tools.calls_in(resp.content)
        reason = resp.stop_reason
        usage = _usage(getattr(resp, "usage", None))
    except (AttributeError, TypeError) as e:
        raise MalformedResponse(type(e).__name__) from None
    if not isinstance(text, str):
        raise MalformedResponse("text is not a string")
    finish = _STOP.get(str(reason), "stop") if reason is not None else "stop"
    seq = getattr(resp, "stop_sequence", None) if reason == "stop_sequence" else None
    prompt, completion = usage or (0, 0)
    read, write = _cache_usage(getattr(resp, "usage", None))
    return Chunk(text=text, finish_reason=finish, completion_tokens=completion, prompt_tokens=prompt,
                 stop_sequence=seq if isinstance(seq, str) else None, tool_calls=calls, cached_tokens=read,
                 cache_write_tokens=write), usage is not None


def _cache_usage(usage) -> tuple[int, int]:
    """(cache_read_input_tokens, cache_creation_input_tokens): the shares of the prompt _usage counts."""
    def count(name: str) -> int:
        v = getattr(usage, name, None)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
    return count("cache_read_input_tokens"), count("cache_creation_input_tokens")


def _usage(usage) -> tuple[int, int] | None:
    """(prompt tokens read: uncached + written to cache + read from cache, completion tokens), or None."""
    if usage is None or not isinstance(usage.input_tokens, int) or not isinstance(usage.output_tokens, int):
        return None
    prompt = (usage.input_tokens + (getattr(usage, "cache_creation_input_tokens", None) or 0)
              + (getattr(usage, "cache_read_input_tokens", None) or 0))
    return prompt, usage.output_tokens
