"""Operator limits (a 400 before admission) and upstream health (cooldown, fail fast, recovery).

Limits run on a real Engine over scripted parts; health on a real Engine whose
upstream is the fault-injecting server (tests/support/fault_upstream.py), through the
real HTTP server and SDKs.
"""
from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

from tests.support.fault_upstream import Fault, FaultUpstream
from tests.support.scripted import ScriptedSampler, fake_config, scripted_engine
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.errors import ConfigError, UpstreamError, UpstreamRefused, UpstreamTimeout
from w2s.proxy.core.health import UpstreamHealth

MSG = [{"role": "user", "content": "hi"}]


def oai(srv, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", **{"max_retries": 0, **kw})


@pytest.fixture
def limited(fresh_servers, server_thread):
    """fake_config with route fake-cbs limited to 8 candidates a round; the server defaults elsewhere."""
    cfg = fake_config()
    cfg.routes["fake-cbs"].limits = type(cfg.routes["fake-cbs"].limits)(max_candidates=8)
    up = ScriptedSampler("up")
    engine = scripted_engine(cfg, up)
    server_thread.run(engine.start())
    return fresh_servers(cfg, engine), up


# --- limits ---------------------------------------------------------------------


@pytest.mark.parametrize("w2s, limit, value", [
    ({"w": 200, "k": 200}, "routes.fake-cbs.limits.max_candidates", "= 40000"),
    ({"w": 2, "k": 4, "n": 3}, "routes.fake-cbs.limits.max_candidates", "= 12"),  # n beams too: max(w, n) * k
    ({"max_tokens": 1_000_000_000, "l": 1}, "server.limits.max_tokens", "= 1000000000"),
    ({"max_tokens": 300, "l": 1}, "server.limits.max_rounds", "= 300"),
])
def test_a_request_over_a_limit_is_a_400_naming_it_and_nothing_runs(limited, w2s, limit, value):
    srv, up = limited
    with pytest.raises(openai.BadRequestError) as e:
        oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, extra_body={"w2s": w2s})
    err = e.value.body
    assert err["code"] == "limit_exceeded" and limit in err["message"] and value in err["message"]
    assert e.value.response.headers["x-should-retry"] == "false"
    assert up.requests == []  # refused before admission: the upstream never heard of it
    with pytest.raises(anthropic.BadRequestError) as e2:
        anthropic.Anthropic(base_url=srv.base, api_key="unused", max_retries=0).messages.create(
            model="fake-cbs", max_tokens=4, messages=MSG, extra_body={"w2s": w2s})
    assert e2.value.body["error"]["type"] == "invalid_request_error" and limit in e2.value.body["error"]["message"]


def test_requests_within_the_limits_run(limited):
    srv, _ = limited
    r = oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, extra_body={"w2s": {"w": 2, "k": 4}})
    assert r.choices[0].message.content
    # The pass-through route has no route limits: the server's apply (n = 16 is 16 candidates).
    r = oai(srv).completions.create(model="fake-pass", prompt="x", n=16, max_tokens=2)
    assert len(r.choices) == 16


def test_limits_in_config_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"routes.r.search: max\(w, n\) \* k = 8 \* 8 = 64 is over the limit "
                                          r"server.limits.max_candidates = 32"):
        parse_config({"models": {"m": {"source": "/x"}}, "upstreams": {"u": {"provider": "local", "model": "m"}},
                      "routes": {"r": {"upstream": "u", "passthrough": True, "search": {"w": 8, "k": 8}}},
                      "server": {"limits": {"max_candidates": 32}}})
    with pytest.raises(ConfigError, match="routes.r.limits.max_rounds: must be 1 or more"):
        parse_config({"models": {"m": {"source": "/x"}}, "upstreams": {"u": {"provider": "local", "model": "m"}},
                      "routes": {"r": {"upstream": "u", "passthrough": True, "limits": {"max_rounds": 0}}}})
    with pytest.raises(ConfigError, match="server.limits.max_tokns: unknown key"):
        parse_config({"server": {"limits": {"max_tokns": 5}}})


# --- health, pure -----------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_health_counts_only_what_says_the_upstream_is_down():
    clock = Clock()
    h = UpstreamHealth("u", allowed_fails=2, cooldown_seconds=10, clock=clock)
    assert not h.record_failure(UpstreamRefused("400 bad request", upstream_status=400))  # the request's fault
    assert h.consecutive_failures == 0
    assert not h.record_failure(UpstreamError("connection refused"))
    assert h.record_failure(UpstreamTimeout("slow", upstream_status=504))  # the second in a row: cooldown
    with pytest.raises(Exception) as e:
        h.check()
    assert e.value.status == 503 and e.value.retry_after == 10 and "cooling down" in e.value.message
    clock.t += 10.5
    h.check()  # the cooldown ran out: traffic may come back
    assert h.record_failure(UpstreamError("still down", upstream_status=502))  # one more: the next cooldown
    h.record_success()
    h.check()
    assert h.snapshot()["state"] == "ok" and h.cooldowns == 2


# --- health, through the server -------------------------------------------------------


def flaky_config(fake: FaultUpstream, cooldown: float):
    return parse_config({
        "upstreams": {"flaky": {"provider": "openai", "mode": "completions", "base_url": f"{fake.base_url}/v1",
                                "model": "m", "api_key": "sk-secret-never-shown", "max_retries": 1,
                                "allowed_fails": 2, "cooldown_seconds": cooldown}},
        "routes": {"flaky-pass": {"upstream": "flaky", "passthrough": True, "search": {"max_tokens": 4}}},
    }, "flaky")


@pytest.fixture
def flaky(fresh_servers, server_thread):
    from w2s.proxy.engine import Engine

    made = []

    def make(cooldown: float):
        fake = server_thread.run(FaultUpstream().start())
        engine = Engine(flaky_config(fake, cooldown))
        server_thread.run(engine.start())
        made.append((fake, engine))
        return fresh_servers(engine.config, engine), fake

    yield make
    for fake, engine in made:
        server_thread.run(engine.aclose())
        server_thread.run(fake.close())


def timed(fn):
    t0 = time.monotonic()
    try:
        fn()
        return 200, time.monotonic() - t0
    except openai.APIStatusError as e:
        return e.status_code, time.monotonic() - t0


def test_a_dead_upstream_fails_fast_after_the_first_failures_and_a_probe_brings_it_back(flaky, server_thread):
    srv, fake = flaky(cooldown=4.0)
    fake.rule = lambda path, body: Fault.error(500, "upstream on fire")
    def call():
        return oai(srv).completions.create(model="flaky-pass", prompt="x", max_tokens=2)
    first = [timed(call) for _ in range(2)]
    assert [s for s, _ in first] == [502, 502]  # each paid its retries
    sent = fake.count("/v1/completions")
    status, seconds = timed(call)
    assert status == 503 and seconds < 0.5  # fast: no upstream call, no retry
    assert fake.count("/v1/completions") == sent
    with pytest.raises(openai.APIStatusError) as e:
        call()
    r = e.value.response
    assert r.headers["x-should-retry"] == "true" and 1 <= int(r.headers["retry-after"]) <= 4
    assert e.value.body["type"] == "upstream_unavailable" and "flaky" in e.value.body["message"]
    detail = json.loads(srv.get("/health?detail=1")[2])
    up = detail["upstreams"]["flaky"]
    assert up["state"] == "cooling_down" and up["consecutive_failures"] == 2
    assert "upstream on fire" in up["last_error"]["message"] and "sk-secret" not in json.dumps(detail)
    assert json.loads(srv.get("/health")[2]) == {"status": "ok"}  # liveness stays cheap
    m = srv.metrics()
    assert m['w2s_upstream_cooling_down{upstream="flaky"}'] == 1
    assert m['w2s_upstream_cooldowns_total{upstream="flaky"}'] == 1

    fake.rule = None  # the upstream comes back; the probe (GET /v1/models) sees it before the cooldown ends
    t0 = time.monotonic()
    while json.loads(srv.get("/health?detail=1")[2])["upstreams"]["flaky"]["state"] == "cooling_down":
        assert time.monotonic() - t0 < 3.5, "the probe should end the cooldown early"
        time.sleep(0.05)
    assert fake.count("/v1/models") >= 1
    assert timed(call)[0] == 200
    assert json.loads(srv.get("/health?detail=1")[2])["upstreams"]["flaky"]["state"] == "ok"


def test_a_connection_refused_upstream_cools_down_and_traffic_returns_when_the_cooldown_ends(flaky, server_thread):
    srv, fake = flaky(cooldown=1.0)
    server_thread.run(fake.close())  # dead: connection refused
    def call():
        return oai(srv).completions.create(model="flaky-pass", prompt="x", max_tokens=2)
    assert [timed(call)[0] for _ in range(3)] == [502, 502, 503]
    server_thread.run(fake.start())  # back on the same port
    fake.rule = lambda path, body: Fault.error(500) if path.endswith("/models") else None  # the probe still fails
    time.sleep(1.1)  # the cooldown runs out on its own
    assert timed(call)[0] == 200
