"""Exact continuation on every chat API that can continue: `continuation: vllm | prefix | partial | plain | auto`.

The fault-injecting upstream plays each hosted API's way (tests/support/fault_upstream.py
`style`): it continues a trailing assistant message only when it is marked its own way,
and starts a new turn otherwise; one variant repeats the partial answer before
continuing. Driven through the real proxy with the openai SDK; the guide is scripted.
"""
from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.fault_upstream import Fault, FaultUpstream, count_on
from tests.support.scripted import ScriptedSampler, ScriptedScorer, fake_config
from w2s.providers.continuation import PREFIX
from w2s.providers.probes import check
from w2s.providers.registry import make_sampler
from w2s.proxy.api.protocol_openai import ChatCompletionRequest
from w2s.proxy.core.config_load import parse_config, upstream_config
from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.types import Chunk

COUNT = [{"role": "user", "content": "Count from 1 to 30, separated by commas."}]
STYLES = ("vllm", "prefix", "partial", "plain")


def config(base_url: str, **up) -> dict:
    return {
        "models": {"m": {"source": "/never-loaded"}},
        "upstreams": {"host": {"provider": "openai", "mode": "chat-continue", "base_url": base_url,
                               "model": "fake", "max_retries": 0, **up}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"cbs": {"upstream": "host", "guide": "g", "search": {"w": 2, "k": 2, "l": 2, "max_tokens": 6}}},
    }


@pytest.fixture
def proxy(fresh_servers, server_thread):
    """proxy(fake_modes, **upstream) -> (server, fake, engine): the proxy in front of a styled fake host."""
    from w2s.proxy.engine import Engine

    made = []

    def make(fake_modes: dict | None = None, **up):
        fake = server_thread.run(FaultUpstream(**(fake_modes or {})).start())
        cfg = parse_config(config(f"{fake.base_url}/v1", **up), "styles")
        engine = Engine(cfg, guides={"g": ScriptedScorer("g")})
        server_thread.run(engine.start())
        made.append((fake, engine))
        return fresh_servers(cfg, engine), fake, engine

    yield make
    for fake, engine in made:
        server_thread.run(engine.aclose())
        server_thread.run(fake.close())


def search(srv) -> tuple[dict, dict]:
    c = openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="cbs", messages=COUNT, max_tokens=6,
                                                      extra_body={"w2s": {"trace": True}})
    return dict(raw.headers), raw.parse().model_extra["w2s"]


@pytest.mark.parametrize("style", STYLES)
def test_auto_finds_each_hosts_style_and_cbs_runs_exact(proxy, style):
    srv, fake, engine = proxy({"style": style})
    headers, trace = search(srv)
    assert headers["x-w2s-mode"] == "cbs" and headers["x-w2s-lost-draws"] == "0" and len(trace["rounds"]) > 1
    assert trace["upstream"]["continuation_style"] == style and trace["upstream"]["continuation"] == "verified"
    tried = trace["upstream"]["styles_tried"]
    assert [t.split(":")[0] for t in tried] == list(STYLES[: STYLES.index(style) + 1])  # in order, then stop
    assert trace["upstream"]["probe_cost"]["calls"] == STYLES.index(style) + 1
    # Every later draw that continues a beam is marked this host's way, and was continued (not restarted).
    later = [x.body for x in fake.requests[STYLES.index(style) + 1:] if x.body["messages"][-1]["role"] == "assistant"]
    assert later and all(fake._marked(b, b["messages"][-1]) for b in later)
    kept = [c["text"] for c in trace["rounds"][0]["candidates"] if c["kept"]]
    assert all(any(c["text"].startswith(k) for k in kept) for c in trace["rounds"][1]["candidates"]
               if c["parent"] is not None)
    assert srv.metrics()[f'w2s_upstream_continuation_style{{style="{style}",upstream="host"}}'] == 1
    detail = engine.health()["host"]["capabilities"]
    assert detail["continuation_style"] == style


def test_a_host_that_repeats_the_partial_answer_has_the_repeat_cut(proxy):
    srv, fake, _ = proxy({"style": "partial", "repeat_prefix": True})
    headers, trace = search(srv)
    assert headers["x-w2s-mode"] == "cbs" and trace["upstream"]["repeats_prefix"] is True
    for rd in trace["rounds"][1:]:
        for c in rd["candidates"]:
            # " m0 m1", never " m0 m0 m1": each chunk follows its parent once.
            assert c["text"].count(" m") <= len(trace["rounds"]), c["text"]
    replies_repeated = [x for x in fake.requests if x.body["messages"][-1].get("partial")]
    assert len(replies_repeated) > 1  # the probe and the later draws


def test_a_style_the_host_rejects_outright_is_not_a_failure(proxy):
    srv, fake, engine = proxy({"style": "partial"})
    # This host answers 400 to fields it does not know (vLLM's flags, the prefix mark).
    fake.rule = lambda path, body: (
        Fault.error(400, "Unrecognized request argument: continue_final_message")
        if body.get("continue_final_message") or (body.get("messages") or [{}])[-1].get("prefix") else None)
    headers, trace = search(srv)
    assert headers["x-w2s-mode"] == "cbs" and trace["upstream"]["continuation_style"] == "partial"
    assert "refused (HTTP 400" in trace["upstream"]["styles_tried"][0]
    h = engine.health()["host"]
    assert h["state"] == "ok" and h["consecutive_failures"] == 0 and h["last_error"] is None  # no cooldown fed


def test_an_explicit_style_skips_the_search_but_is_verified_once(proxy):
    srv, fake, _ = proxy({"style": "prefix"}, continuation="prefix")
    headers, trace = search(srv)
    search(srv)
    assert headers["x-w2s-mode"] == "cbs" and trace["upstream"]["probe_cost"]["calls"] == 1
    assert sum(1 for x in fake.requests if x.body.get("temperature") == 0) == 1
    srv2, _, _ = proxy({"style": "partial"}, continuation="prefix")  # the wrong explicit style: demoted
    headers, trace = search(srv2)
    assert headers["x-w2s-mode"] == "bon-approx" and trace["upstream"]["continuation"] == "failed"


def test_a_preset_fills_the_style_and_base_url_and_your_keys_win():
    up = upstream_config({"preset": "moonshot", "model": "kimi-k2.5"})
    assert (up.draw_mode, up.continuation, up.base_url) == ("chat-continue", "partial", "https://api.moonshot.ai/v1")
    up = upstream_config({"preset": "deepseek", "model": "deepseek-chat", "continuation": "auto",
                          "base_url": "http://127.0.0.1:9/v1"})
    assert up.continuation == "auto" and up.base_url == "http://127.0.0.1:9/v1"
    assert upstream_config({"preset": "groq", "model": "llama"}).max_n == 1


def test_the_proxys_own_server_takes_prefix_and_partial_as_continuation():
    for key in ("prefix", "partial"):
        req = ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [*COUNT, {"role": "assistant", "content": "11, 12", key: True}]})
        req.check_supported()
        assert req.to_prompt().prefill == "11, 12"
        bad = ChatCompletionRequest.model_validate({"model": "m", "messages": [{**COUNT[0], key: True}]})
        with pytest.raises(InvalidRequest, match=rf"messages\[0\].{key}: only the last message"):
            bad.check_supported()


def counting(prefix: str, sibling: int, limit: int) -> Chunk:
    """An upstream that continues a count, as a model at temperature 0 would."""
    return Chunk(count_on(prefix) or f" w{sibling}", "length", completion_tokens=limit)


def test_w2s_check_tries_every_style_against_a_proxy_in_front_of_a_proxy(fresh_servers, server_thread):
    """The inner proxy (pass-through over a counting upstream) continues a trailing assistant message
    marked in any style, so every style passes; auto would keep the first."""
    from w2s.proxy.engine import Engine

    inner_engine = Engine(fake_config(), samplers={"up": ScriptedSampler("up", script=counting)},
                          guides={"g": ScriptedScorer("g")})
    server_thread.run(inner_engine.start())
    inner = fresh_servers(fake_config(), inner_engine)
    up = upstream_config({"provider": "openai", "mode": "chat-continue", "base_url": inner.v1, "model": "fake-pass",
                          "max_retries": 0}, "inner")
    sampler = make_sampler("inner", up, None)
    report = server_thread.run(check(sampler))
    server_thread.run(sampler.aclose())
    server_thread.run(inner_engine.aclose())
    lines = "\n".join(report.lines())
    for style in STYLES:
        assert f"continuation:{style}" in lines
    conts = [v for v in report.verdicts if v.capability.startswith("continuation:")]
    assert [v.ok for v in conts] == [True] * 4 and report.blocking is None
    assert "continuation: vllm  # continues exactly: vllm, prefix, partial, plain" in lines
    assert "probe cost 1 call(s)" in conts[1].detail


def test_the_probe_tells_a_repeat_from_a_new_answer():
    from w2s.providers.continuation import judge

    assert judge("0").ok and not judge("0").repeats
    assert judge(PREFIX + "0").ok and judge(PREFIX + "0").repeats
    assert not judge("1, 2, 3, 4").ok  # a fresh count starts at 1, never at 11
    assert asyncio.iscoroutinefunction(check)


@pytest.mark.parametrize("new_turn, mode", [(False, "cbs"), (True, "bon-approx")])
def test_another_vendors_anthropic_endpoint_gets_the_prefill_probe(fresh_servers, server_thread, new_turn, mode):
    """`provider: anthropic` with another base_url: prefill is probed before CBS relies on it."""
    from w2s.proxy.engine import Engine

    fake = server_thread.run(FaultUpstream(new_turn=new_turn).start())
    cfg = parse_config({**config(""), "upstreams": {"host": {"provider": "anthropic", "base_url": fake.base_url,
                                                             "model": "claude-like", "max_retries": 0}}})
    engine = Engine(cfg, guides={"g": ScriptedScorer("g")})
    server_thread.run(engine.start())
    srv = fresh_servers(cfg, engine)
    headers, trace = search(srv)
    server_thread.run(engine.aclose())
    server_thread.run(fake.close())
    assert headers["x-w2s-mode"] == mode
    probe = fake.requests[0].body
    assert probe["messages"][-1] == {"role": "assistant", "content": PREFIX} and probe["temperature"] == 0
    assert trace["upstream"]["prefill_probe"]["continuation"] == ("failed" if new_turn else "verified")
