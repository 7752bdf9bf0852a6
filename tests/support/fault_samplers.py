"""What the remote-sampler tests share: real SDK samplers pointed at a fault-injecting fake upstream on loopback
(tests/support/fault_upstream.py), with backoff shortened so retries take milliseconds."""
from __future__ import annotations

import pytest

from tests.support.fault_upstream import FaultUpstream
from w2s.providers.anthropic import AnthropicSampler
from w2s.providers.openai import OpenAISampler
from w2s.providers.retry import RetryPolicy
from w2s.proxy.core.config import AnyUpstream
from w2s.proxy.core.config_load import upstream_config
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest

SECRET = "sk-test-SECRET123"
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.05)
PROMPT = Prompt.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}])


@pytest.fixture
def offline_key(monkeypatch):  # the API key the samplers read (never real)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("W2S_TEST_KEY", SECRET)


@pytest.fixture(name="fake")
async def fake_upstream():  # the fixture `fake`: a fault-injecting upstream on loopback
    f = await FaultUpstream().start()
    yield f
    await f.close()


def cfg(provider: str, fake: FaultUpstream, **kw) -> AnyUpstream:
    base = fake.base_url + "/v1" if provider == "openai" else fake.base_url
    kw.setdefault("timeout", 2.0)
    return upstream_config(dict(provider=provider, model="fake-model", base_url=base,
                                api_key="os.environ/W2S_TEST_KEY", **kw))


def openai_sampler(fake, policy=FAST, **kw) -> OpenAISampler:
    return OpenAISampler.from_config("up", cfg("openai", fake, **kw), None, retry_policy=policy)


def anthropic_sampler(fake, policy=FAST, **kw) -> AnthropicSampler:
    return AnthropicSampler.from_config("claude", cfg("anthropic", fake, **kw), None, retry_policy=policy)


def req(*conts: tuple[str, int | None], prompt=PROMPT, **kw) -> SampleRequest:
    return SampleRequest(prompt, [Continuation(p, m) for p, m in conts], **kw)
