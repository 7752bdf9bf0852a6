"""What a response says it cost (#26), end to end over scripted parts: headers, the `w2s` field, a stream's last
event, a money budget; and on the wire, that every call of one search resends the same prompt bytes (so an
upstream's automatic prefix cache can hit)."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.support.fault_upstream import FaultUpstream
from tests.support.scripted import ScriptedSampler, ScriptedScorer, scripted_engine
from w2s.proxy.core.config_load import parse_config, upstream_config
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Prompt, SearchParams

MSG = [{"role": "user", "content": "hi"}]
PRICES = {"input": 3.0, "cached_input": 0.3, "output": 15.0}


def config(prices: dict | None = PRICES):
    up = {"provider": "local", "model": "m"} | ({"prices": prices} if prices else {})
    return parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"up": up},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"r": {"upstream": "up", "guide": "g", "search": {"w": 2, "k": 2, "l": 1, "max_tokens": 6}}},
    }, "cost")


@pytest.fixture
def server(fresh_servers, server_thread):
    def make(prices: dict | None = PRICES):
        engine = scripted_engine(config(prices), ScriptedSampler("up"), ScriptedScorer("g"))
        server_thread.run(engine.start())
        return fresh_servers(engine.config, engine)
    return make


def client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)


def test_headers_always_say_what_it_cost_and_the_w2s_field_when_asked(server):
    srv = server()
    raw = client(srv).chat.completions.with_raw_response.create(model="r", messages=MSG)
    h, body = raw.headers, raw.parse()
    prompt, completion = int(h["x-w2s-upstream-prompt-tokens"]), int(h["x-w2s-upstream-completion-tokens"])
    assert h["x-w2s-upstream-cached-tokens"] == "0"
    assert float(h["x-w2s-cost-usd"]) == pytest.approx((prompt * 3 + completion * 15) / 1e6, rel=1e-6)
    assert "w2s" not in (body.model_extra or {})  # nothing degraded, nothing asked
    asked = client(srv).chat.completions.create(model="r", messages=MSG, extra_body={"w2s": {"cost": True}})
    cost = asked.model_extra["w2s"]["cost"]
    assert cost["prompt_tokens"] == prompt and cost["completion_tokens"] == completion
    assert cost["upstream_calls"] == int(h["x-w2s-upstream-calls"]) and cost["cost_usd"] > 0
    traced = client(srv).chat.completions.create(model="r", messages=MSG, extra_body={"w2s": {"trace": True}})
    assert traced.model_extra["w2s"]["cost"] == cost
    assert all("cost_usd" in rd and "upstream_cached_tokens" in rd for rd in traced.model_extra["w2s"]["rounds"])


def test_unpriced_upstream_has_tokens_but_no_cost(server):
    srv = server(prices=None)
    raw = client(srv).chat.completions.with_raw_response.create(model="r", messages=MSG,
                                                                 extra_body={"w2s": {"cost": True}})
    assert "x-w2s-cost-usd" not in raw.headers
    cost = raw.parse().model_extra["w2s"]["cost"]
    assert "cost_usd" not in cost and cost["completion_tokens"] > 0
    with pytest.raises(openai.BadRequestError, match="has no prices"):
        client(srv).chat.completions.create(model="r", messages=MSG, extra_body={"w2s": {"max_cost_usd": 1.0}})


def test_a_stream_says_what_it_cost_in_its_last_event(server):
    srv = server()
    # An OpenAI stream ends with a chunk without choices only for a client that asked for one
    # (include_usage, as OpenAI's own stream, or w2s.cost): plain clients read choices[0] on every chunk.
    plain = list(client(srv).chat.completions.create(model="r", messages=MSG, stream=True))
    assert all(e.choices for e in plain)
    for extra in ({"stream_options": {"include_usage": True}}, {"extra_body": {"w2s": {"cost": True}}}):
        events = list(client(srv).chat.completions.create(model="r", messages=MSG, stream=True, **extra))
        last = events[-1]
        assert not last.choices and last.model_extra["w2s"]["cost"]["cost_usd"] > 0
    with anthropic.Anthropic(base_url=srv.base, api_key="unused", max_retries=0).messages.stream(
            model="r", max_tokens=6, messages=MSG) as s:
        kinds = [(e.type, getattr(e, "model_extra", None) or {}) for e in s]
    assert any("cost" in (extra.get("w2s") or {}) for _, extra in kinds)


def test_a_money_budget_stops_with_length_and_the_best_so_far(server):
    srv = server()
    full = client(srv).chat.completions.create(model="r", messages=MSG, extra_body={"w2s": {"cost": True}})
    budget = full.model_extra["w2s"]["cost"]["cost_usd"] / 3
    raw = client(srv).chat.completions.with_raw_response.create(
        model="r", messages=MSG, extra_body={"w2s": {"max_cost_usd": budget}})
    body = raw.parse()
    assert body.choices[0].finish_reason == "length" and raw.headers["x-w2s-budget-exhausted"] == "true"
    assert len(body.choices[0].message.content) < len(full.choices[0].message.content)


# --- the wire: one prompt, resent byte for byte -------------------------------------------------------


@pytest.fixture
async def fault():
    f = await FaultUpstream(style="vllm").start()
    yield f
    await f.close()


@pytest.mark.parametrize("mode", ["completions", "chat-continue"])
async def test_every_call_of_one_search_sends_the_same_prompt_bytes(fault, mode):
    from w2s.providers.registry import make_sampler

    own = {"template": "{prompt}"} if mode == "completions" else {"continuation": "vllm"}
    cfg = upstream_config({"provider": "openai", "model": "m", "mode": mode, "base_url": fault.base_url + "/v1",
                           "verify_continuation": False} | own)
    sampler = make_sampler("up", cfg, None)
    prompt = Prompt.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "A story?"}]) \
        if mode == "chat-continue" else Prompt.raw("Once upon a time")
    scorer = ScriptedScorer()
    result = await search(prompt, sampler, scorer.session(prompt), SearchParams(w=2, k=2, l=2, max_tokens=6))
    await sampler.aclose()
    bodies = [r.body for r in fault.requests]
    assert len(result.rounds) >= 2 and len(bodies) >= 2  # the fake counts 3 tokens a chunk
    if mode == "completions":
        heads = {b["prompt"][:len("Once upon a time")] for b in bodies}
        assert heads == {"Once upon a time"} and bodies[0]["prompt"] == "Once upon a time"
    else:
        # Everything before the partial answer, and every setting, is the same bytes on every call.
        def fixed(b):
            msgs = b["messages"][:-1] if b["messages"][-1]["role"] == "assistant" else b["messages"]
            return json.dumps(msgs, sort_keys=True)
        assert len({fixed(b) for b in bodies}) == 1
        assert all(b["messages"][-1]["role"] == "assistant" for b in bodies[1:])
    settings = {json.dumps({k: v for k, v in b.items() if k not in ("prompt", "messages", "seed", "n",
                                                                     "continue_final_message",
                                                                     "add_generation_prompt")},
                           sort_keys=True) for b in bodies}
    assert len(settings) == 1


def test_metrics_count_cached_tokens_and_cost(server):
    srv = server()
    client(srv).chat.completions.create(model="r", messages=MSG)
    status, _, body = srv.get("/metrics")
    text = body.decode() if isinstance(body, bytes) else body
    assert status == 200
    assert 'w2s_upstream_tokens_total{kind="cached",route="r"} 0.0' in text
    cost = [line for line in text.splitlines() if line.startswith('w2s_upstream_cost_usd_total{route="r"}')]
    assert cost and float(cost[0].split()[-1]) > 0


def test_the_responses_api_says_what_it_cost_when_asked_and_at_the_end_of_a_stream(server):
    srv = server()
    resp = client(srv).responses.create(model="r", input="hi", extra_body={"w2s": {"cost": True}})
    assert resp.model_extra["w2s"]["cost"]["cost_usd"] > 0
    events = list(client(srv).responses.create(model="r", input="hi", stream=True))
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.model_extra["w2s"]["cost"]["completion_tokens"] > 0
