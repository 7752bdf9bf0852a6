"""The upstream of tests/integration/test_providers_live.py: this project's pass-through server
on loopback, behind an API key, recording every exchange (request body, response, timing).
The fixture that starts it is `upstream` in tests/integration/conftest.py."""
from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.servers import Loopback
from w2s.providers.anthropic import AnthropicSampler
from w2s.providers.openai import OpenAISampler
from w2s.proxy.core.config_load import upstream_config
from w2s.proxy.core.types import Prompt

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


def remote(upstream: Upstream, mode: str, **kw) -> OpenAISampler | AnthropicSampler:
    common = dict(model="passthrough", api_key=f"os.environ/{KEY_ENV}", timeout=600.0, max_retries=0, **kw)
    if mode == "anthropic":
        return AnthropicSampler("claude-up", upstream_config(dict(provider="anthropic", base_url=upstream.base,
                                                                  **common)))
    return OpenAISampler.from_config(f"oa-{mode}", upstream_config(dict(provider="openai", mode=mode,
                                                                        base_url=upstream.v1, max_n=16, **common)))


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
