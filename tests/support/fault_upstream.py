"""A fault-injecting fake upstream for the provider tests (loopback only).

Speaks just enough of OpenAI ``/v1/completions``, ``/v1/chat/completions`` and
Anthropic ``/v1/messages`` for the real SDKs to parse its answers, and can be
scripted per test: queued faults are served first, in order, then a `rule`
(request body -> Fault or None) decides, then a plain success.

It is for fault injection only: success-path behaviour is tested against the
project's own pass-through server.

Besides per-request faults it can misbehave the ways real OpenAI-compatible
servers do (see DEVELOPERS' notes on real servers): `ignore_n` (one choice
whatever n asks), `new_turn` (a trailing assistant message is answered with a
fresh turn instead of continued), `include_usage = False` (no usage block) and
`echo_stops` (the stop string is left in the text). Its text is " c0", " c1"...
except for a comma-separated count, which it continues like a model at
temperature 0 would ("..., 8, 9, 1" -> "0, 11, 12"): what the proxy's
continuation probe asks.
"""
from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

# The real Anthropic refusal for a trailing assistant message (Claude 4.6+).
PREFILL_REFUSAL = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "This model does not support assistant message prefill. "
                   "The conversation must end with a user message.",
    },
    "request_id": "req_fake_prefill",
}

_HIDDEN_HEADERS = {"authorization", "x-api-key", "api-key", "cookie"}


@dataclass
class Fault:
    kind: str  # ok | status | sleep | reset | malformed
    status: int = 200
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    text: str | None = None  # ok: the text every choice gets
    finish: str | None = None  # ok: the provider's own finish/stop reason

    # Constructors the tests read well with.
    @classmethod
    def ok(cls, text: str | None = None, finish: str | None = None) -> "Fault":
        return cls("ok", text=text, finish=finish)

    @classmethod
    def error(cls, status: int, message: str = "fake failure", retry_after: str | None = None,
              headers: dict[str, str] | None = None) -> "Fault":
        h = dict(headers or {})
        if retry_after is not None:
            h["Retry-After"] = retry_after
        return cls("status", status=status, body={"error": {"message": message, "type": "fake_error",
                                                            "param": None, "code": None}}, headers=h)

    @classmethod
    def prefill_refusal(cls) -> "Fault":
        return cls("status", status=400, body=PREFILL_REFUSAL,
                   headers={"x-should-retry": "false", "request-id": "req_fake_prefill"})

    @classmethod
    def context_too_long(cls, style: str = "openai", limit: int = 4096, asked: int = 5000) -> "Fault":
        """The upstream's own "prompt too long" 400, as OpenAI (its code), vLLM or Anthropic word it."""
        if style == "openai":
            body = {"error": {"message": f"This model's maximum context length is {limit} tokens. However, your "
                                         f"messages resulted in {asked} tokens.", "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}
        elif style == "vllm":
            body = {"object": "error", "message": f"This model's maximum context length is {limit} tokens. However, "
                                                  f"you requested {asked} tokens. Please reduce the length.",
                    "type": "BadRequestError", "param": None, "code": 400}
        else:
            body = {"type": "error", "error": {"type": "invalid_request_error",
                                               "message": f"prompt is too long: {asked} tokens > {limit} maximum"}}
        return cls("status", status=400, body=body)

    @classmethod
    def sleep(cls, seconds: float) -> "Fault":
        return cls("sleep", delay=seconds)

    @classmethod
    def reset(cls) -> "Fault":
        return cls("reset")

    @classmethod
    def malformed(cls) -> "Fault":
        return cls("malformed")


@dataclass
class Recorded:
    path: str
    body: dict
    headers: dict[str, str]  # auth headers removed
    t: float  # time.monotonic() on arrival
    had_auth: bool = False  # an API key header was sent (its value is never kept)
    disconnected: bool = False  # a sleeping request saw the client go away


Rule = Callable[[str, dict], "Fault | None"]

_COUNT = re.compile(r"(\d+), (\d*)$")


def count_on(text: str, numbers: int = 8) -> str | None:
    """The continuation of a comma-separated count ("1, 2, 3, 1" -> "0, 11, 12, ..."), or None."""
    m = _COUNT.search(text)
    if m is None:
        return None
    nxt = int(m.group(1)) + 1
    if not str(nxt).startswith(m.group(2)):
        return None
    return str(nxt)[len(m.group(2)):] + "".join(f", {k}" for k in range(nxt + 1, nxt + numbers))


def apply_stop(text: str, stops: list[str], echo: bool) -> tuple[str, bool]:
    """Cut at the first stop string (kept in the text when `echo`, as some servers do)."""
    hits = [(i, s) for s in stops if s and (i := text.find(s)) >= 0]
    if not hits:
        return text, False
    i, s = min(hits)
    return text[: i + len(s) if echo else i], True


class FaultUpstream:
    def __init__(self, include_usage: bool = True, ignore_n: bool = False, new_turn: bool = False,
                 echo_stops: bool = False, style: str | None = None, repeat_prefix: bool = False):
        self.include_usage = include_usage
        self.ignore_n = ignore_n  # one choice, whatever n asks
        self.new_turn = new_turn  # chat: a trailing assistant message gets a fresh answer, not a continuation
        # chat: continue a trailing assistant message only when it is marked this way (vllm: the body's
        # continue_final_message; prefix / partial: that key on the message; plain: no mark at all), as the
        # hosted APIs do; any other trailing assistant message gets a new turn.
        self.style = style
        self.repeat_prefix = repeat_prefix  # chat: the reply repeats the partial answer before continuing it
        self.echo_stops = echo_stops  # the matched stop string stays in the text
        self.requests: list[Recorded] = []
        self.rule: Rule | None = None
        self._queue: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        self.port = 0
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being handled at once

    # -- scripting ---------------------------------------------------------
    def push(self, *faults: Fault) -> None:
        self._queue.extend(faults)

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> "FaultUpstream":
        """Listen (again, after `close`, on the same port: an upstream that died and came back)."""
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening: connections are refused until `start` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ----------------------------------------------------------
    async def _serve(self, request: web.Request, success: Callable[[dict, Fault], dict]) -> web.StreamResponse:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
        had_auth = any(k.lower() in ("authorization", "x-api-key") for k in request.headers)
        rec = Recorded(request.path, body, headers, time.monotonic(), had_auth=had_auth)
        self.requests.append(rec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, rec, success)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, rec: Recorded,
                      success: Callable[[dict, Fault], dict]) -> web.StreamResponse:
        body = rec.body
        fault = self._queue.popleft() if self._queue else None
        if fault is None and self.rule is not None:
            fault = self.rule(request.path, body)
        fault = fault or Fault.ok()

        if fault.kind == "status":
            return web.json_response(fault.body or {}, status=fault.status, headers=fault.headers)
        if fault.kind == "malformed":
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        if fault.kind == "reset":
            # Drop the connection with no response at all.
            request.transport.abort()
            raise asyncio.CancelledError
        if fault.kind == "sleep":
            end = time.monotonic() + fault.delay
            while time.monotonic() < end:
                t = request.transport
                if t is None or t.is_closing():
                    rec.disconnected = True
                    raise asyncio.CancelledError
                await asyncio.sleep(0.02)
        return web.json_response(success(body, fault))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models (both APIs list models there): what a health probe asks."""
        rec = Recorded(request.path, {}, {}, time.monotonic())
        self.requests.append(rec)
        fault = self.rule(request.path, {}) if self.rule is not None else None
        if fault is not None and fault.kind == "status":
            return web.json_response(fault.body or {}, status=fault.status, headers=fault.headers)
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                              "owned_by": "fake", "type": "model",
                                                              "display_name": "fake", "created_at": "2026-01-01T00:00:00Z"}],
                                  "has_more": False, "first_id": "fake", "last_id": "fake"})

    def _choices(self, body: dict, f: Fault, continued: str | None, default: str) -> list[tuple[str, str]]:
        """(text, finish_reason) per choice: `continued` is the text the answer must continue."""
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        out = []
        for i in range(n):
            counted = count_on(continued) if continued else None
            # A server ignoring n answers every call afresh: its one text differs call to call.
            tag = len(self.requests) - 1 if self.ignore_n else i
            text = f.text if f.text is not None else (counted if counted is not None else f"{default}{tag}")
            text, stopped = apply_stop(text, stops, self.echo_stops)
            out.append((text, "stop" if stopped else (f.finish or "length")))
        return out

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        def ok(body: dict, f: Fault) -> dict:
            choices = self._choices(body, f, body.get("prompt") or "", " c")
            n = len(choices)
            out = {
                "id": f"cmpl-{next(self._ids)}", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": i, "text": t, "finish_reason": fin, "logprobs": None}
                            for i, (t, fin) in enumerate(choices)],
            }
            if self.include_usage:
                out["usage"] = {"prompt_tokens": 7, "completion_tokens": 3 * n, "total_tokens": 7 + 3 * n}
            return out

        return await self._serve(request, ok)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        def ok(body: dict, f: Fault) -> dict:
            last = last_message(body)
            continued = last.get("content") if last.get("role") == "assistant" else None
            default = " m"
            if (self.new_turn or not self._marked(body, last)) and continued is not None:
                # A fresh answer starts over, whatever was written already.
                default = "The movie was great, and I'm glad I saw it"
                continued = "0, " if count_on(continued) is not None else None  # a count starts again at 1
            choices = self._choices(body, f, continued, default)
            if self.repeat_prefix and continued and not self.new_turn and self._marked(body, last):
                choices = [(continued + t, fin) for t, fin in choices]
            n = len(choices)
            out = {
                "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                             "finish_reason": fin, "logprobs": None}
                            for i, (t, fin) in enumerate(choices)],
            }
            if self.include_usage:
                out["usage"] = {"prompt_tokens": 9, "completion_tokens": 3 * n, "total_tokens": 9 + 3 * n}
            return out

        return await self._serve(request, ok)

    def _marked(self, body: dict, last: dict) -> bool:
        """Whether a trailing assistant message is marked for continuation the way this server's style wants."""
        marks = {"vllm": body.get("continue_final_message") is True, "prefix": last.get("prefix") is True,
                 "partial": last.get("partial") is True}
        if self.style is None:
            return True  # continues any trailing assistant message
        if self.style == "plain":
            return not any(marks.values())
        return marks[self.style]

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        def ok(body: dict, f: Fault) -> dict:
            last = last_message(body)
            prefill = last.get("content") if last.get("role") == "assistant" else None
            # A prefilled count is continued, unless this endpoint starts a new turn whatever it gets.
            counted = count_on(prefill) if isinstance(prefill, str) and not self.new_turn else None
            text, stopped = apply_stop(counted if counted is not None else " a0", body.get("stop_sequences") or [],
                                       False)
            return {
                "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
                "model": body.get("model", "fake"),
                "content": [{"type": "text", "text": f.text if f.text is not None else text}],
                "stop_reason": f.finish or ("stop_sequence" if stopped else "max_tokens"), "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 3,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }

        return await self._serve(request, ok)


def last_message(body: dict) -> dict:
    msgs = body.get("messages") or [{}]
    return msgs[-1]


