"""The upstream of tests/test_providers_live.py: this project's pass-through server on
loopback, behind an API key, recording every exchange (request body, response, timing)."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from w2s.providers.anthropic import AnthropicSampler
from w2s.providers.openai import OpenAISampler
from w2s.proxy.core.config import UpstreamConfig
from w2s.proxy.server.app import create_app, start
from w2s.proxy.core.types import Prompt
from tests.server_fixtures import Loopback

KEY_ENV = "W2S_LIVE_UPSTREAM_KEY"
KEY = "sk-live-upstream-SECRET-4242"
PROMPT = Prompt.raw("I watched this movie last night and")


# --- the upstream: the pass-through server, recording every exchange ----------------------


@dataclass
class Exchange:
    path: str
    body: dict
    status: int
    response: dict | None
    started: float
    ended: float


@dataclass
class Upstream(Loopback):
    port: int
    log: list[Exchange] = field(default_factory=list)

    def take(self) -> list[Exchange]:
        got, self.log[:] = list(self.log), []
        return got


@pytest.fixture(scope="session")
async def upstream(engine):
    """The test config's pass-through route over HTTP, behind an API key from the environment."""
    os.environ[KEY_ENV] = KEY
    cfg = dataclasses.replace(engine.config)
    cfg.server = dataclasses.replace(cfg.server, api_keys=[f"os.environ/{KEY_ENV}"], max_concurrent_searches=8)
    app = create_app(cfg, engine)
    up = Upstream(0)

    @web.middleware
    async def record(request: web.Request, handler):
        body = json.loads(await request.read() or b"{}") if request.method == "POST" else None
        t0 = time.monotonic()
        resp = await handler(request)
        if body is not None:
            data = json.loads(resp.body) if isinstance(resp, web.Response) and resp.body else None
            up.log.append(Exchange(request.path, body, resp.status, data, t0, time.monotonic()))
        return resp

    app.middlewares.append(record)  # innermost: sees what the handlers see, after auth
    runner, up.port = await start(app, "127.0.0.1", 0)
    yield up
    await runner.cleanup()


def remote(upstream: Upstream, mode: str, **kw) -> OpenAISampler | AnthropicSampler:
    common = dict(model="passthrough", api_key=f"os.environ/{KEY_ENV}", timeout=600.0, max_retries=0, **kw)
    if mode == "anthropic":
        return AnthropicSampler("claude-up", UpstreamConfig(provider="anthropic", base_url=upstream.base, **common))
    return OpenAISampler(f"oa-{mode}", UpstreamConfig(provider="openai", mode=mode, base_url=upstream.v1,
                                                      max_n=16, **common))


def sent_prefix(mode: str, body: dict) -> str:
    """The partial answer an upstream request asked to continue."""
    if mode == "completions":
        assert body["prompt"].startswith(PROMPT.text)
        return body["prompt"][len(PROMPT.text):]
    last = body["messages"][-1]
    if last["role"] != "assistant":
        return ""
    return last["content"] if isinstance(last["content"], str) else "".join(b["text"] for b in last["content"])


def choices(mode: str, ex: Exchange) -> list[str]:
    r = ex.response
    if mode == "anthropic":
        return ["".join(b["text"] for b in r["content"])]
    return [c["text"] if mode == "completions" else c["message"]["content"]
            for c in sorted(r["choices"], key=lambda c: c["index"])]


def usage(mode: str, ex: Exchange) -> tuple[int, int]:
    u = ex.response["usage"]
    if mode == "anthropic":
        return u["input_tokens"], u["output_tokens"]
    return u["prompt_tokens"], u["completion_tokens"]
