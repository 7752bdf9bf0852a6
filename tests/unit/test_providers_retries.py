"""Retries of the remote samplers (real openai/anthropic SDKs, max_retries=0; one tenacity layer) against a
fault-injecting fake upstream: what is retried, Retry-After, timeouts, never a 400, and a round that degrades.

Loopback only; backoff shortened, the one deliberate wait is Retry-After: 1.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.fault_samplers import (  # noqa: F401 (fake_upstream, offline_key: fixtures)
    anthropic_sampler,
    fake_upstream,
    offline_key,
    openai_sampler,
    req,
)
from tests.support.fault_upstream import Fault, last_message
from w2s.providers.retry import RetryPolicy, retry_after_seconds
from w2s.proxy.core.errors import UpstreamError, UpstreamRefused, UpstreamTimeout

pytestmark = pytest.mark.usefixtures("offline_key")


# -- retries ------------------------------------------------------------------

async def test_429_retry_after_is_honoured(fake):
    fake.push(Fault.error(429, retry_after="1"))
    s = openai_sampler(fake)
    r = await s.sample(req(("", 4)))
    await s.aclose()
    assert fake.count() == 2 and s.stats.retries == 1 and r.chunks[0].error is None
    assert fake.requests[1].t - fake.requests[0].t >= 1.0


@pytest.mark.parametrize("fault", [Fault.error(500), Fault.error(529), Fault.reset(), Fault.malformed(),
                                   Fault.error(408), Fault.error(409)],
                         ids=["500", "529", "reset", "malformed", "408", "409"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_transient_faults_are_retried(fake, provider, fault):
    fake.push(fault, fault)
    s = openai_sampler(fake) if provider == "openai" else anthropic_sampler(fake)
    r = await s.sample(req(("", 4)))
    await s.aclose()
    assert fake.count() == 3 and s.stats.retries == 2 and s.stats.attempts == 3
    assert r.chunks[0].error is None


async def test_timeout_is_retried_and_the_abandoned_request_is_closed(fake):
    fake.push(Fault.sleep(3))
    s = openai_sampler(fake, timeout=0.3)
    t0 = time.monotonic()
    r = await s.sample(req(("", 4)))
    await s.aclose()
    assert r.chunks[0].error is None and s.stats.retries == 1 and fake.count() == 2
    assert time.monotonic() - t0 < 2.0
    for _ in range(50):
        if fake.requests[0].disconnected:
            break
        await asyncio.sleep(0.02)
    assert fake.requests[0].disconnected


async def test_retries_exhausted_raise_upstream_error_naming_provider_and_status(fake):
    fake.rule = lambda path, body: Fault.error(503)
    s = openai_sampler(fake, policy=RetryPolicy(max_retries=2, backoff_base=0.01, backoff_cap=0.02))
    with pytest.raises(UpstreamError) as ei:
        await s.sample(req(("", 4), ("", 4)))
    await s.aclose()
    e = ei.value
    assert type(e) is UpstreamError and e.status == 502 and e.upstream_status == 503 and e.provider == "up"
    assert "HTTP 503" in e.message and "'up'" in e.message and "3 attempts" in e.message
    assert fake.count() == 3  # one grouped call (n=2), retried twice


async def test_timeouts_exhausted_raise_upstream_timeout(fake):
    fake.rule = lambda path, body: Fault.sleep(2)
    s = anthropic_sampler(fake, timeout=0.2, policy=RetryPolicy(max_retries=1, backoff_base=0.01))
    with pytest.raises(UpstreamTimeout) as ei:
        await s.sample(req(("", 4)))
    await s.aclose()
    assert ei.value.status == 504 and "claude" in ei.value.message and fake.count() == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_400_is_never_retried(fake, provider):
    fake.push(Fault.error(400, "bad temperature"))
    s = openai_sampler(fake) if provider == "openai" else anthropic_sampler(fake)
    with pytest.raises(UpstreamRefused) as ei:
        await s.sample(req(("", 4)))
    await s.aclose()
    assert fake.count() == 1 and s.stats.retries == 0
    assert ei.value.upstream_status == 400 and "HTTP 400" in ei.value.message
    assert "bad temperature" in ei.value.message


async def test_x_should_retry_false_wins_over_status(fake):
    fake.push(Fault.error(500, headers={"x-should-retry": "false"}))
    s = anthropic_sampler(fake)
    with pytest.raises(UpstreamError):
        await s.sample(req(("", 4)))
    await s.aclose()
    assert fake.count() == 1


async def test_partial_round_degrades_to_error_chunks(fake):
    fake.rule = lambda path, body: Fault.error(500) if body["prompt"].endswith("bad") else None
    s = openai_sampler(fake, policy=RetryPolicy(max_retries=1, backoff_base=0.01))
    r = await s.sample(req(("good", 4), ("bad", 4), ("good", 4)))
    await s.aclose()
    ok, bad = [r.chunks[0], r.chunks[2]], r.chunks[1]
    assert all(c.error is None and c.text for c in ok)
    assert bad.error and "HTTP 500" in bad.error and bad.text == "" and bad.completion_tokens == 0
    assert r.calls == 2


async def test_anthropic_partial_round_degrades(fake):
    fake.rule = lambda path, body: (Fault.error(529) if last_message(body)["content"] == "bad" else None)
    s = anthropic_sampler(fake, policy=RetryPolicy(max_retries=1, backoff_base=0.01))
    r = await s.sample(req(("ok", 4), ("bad", 4), ("ok", 4)))
    await s.aclose()
    assert [c.error is None for c in r.chunks] == [True, False, True]
    assert "HTTP 529" in r.chunks[1].error and r.calls == 3



# -- Retry-After parsing -----------------------------------------------------

def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
