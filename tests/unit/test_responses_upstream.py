"""`mode: responses`: an upstream served only on POST /v1/responses. The upstream here is this
project's own server over scripted parts (one proxy in front of another), so every request the
sampler makes goes through a real /v1/responses endpoint."""
from __future__ import annotations

import openai
import pytest

from tests.support.scripted import ScriptedSampler, ScriptedScorer, scripted_engine
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.engine import Engine


@pytest.fixture
def pair(fresh_servers, server_thread):
    """(the front proxy, the scripted upstream behind the back proxy's pass-through route)."""
    up = ScriptedSampler("up")
    back_engine = scripted_engine(sampler=up)
    server_thread.run(back_engine.start())
    back = fresh_servers(back_engine.config, back_engine)
    config = parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"resp": {"provider": "openai", "mode": "responses", "base_url": back.v1,
                               "model": "fake-pass", "api_key": "unused", "stop": ["zeta"]}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"bon": {"upstream": "resp", "guide": "g", "search": {"w": 1, "k": 3, "l": None, "max_tokens": 8}},
                   "cbs": {"upstream": "resp", "guide": "g", "search": {"w": 2, "k": 2, "l": 2, "max_tokens": 8}}},
    }, "front")
    engine = Engine(config, guides={"g": ScriptedScorer("g")})
    server_thread.run(engine.start())
    yield fresh_servers(config, engine), up
    for e in (engine, back_engine):
        server_thread.run(e.aclose())


def chat(srv, route: str, **kw):
    c = openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], **kw)


@pytest.mark.parametrize("route, draws", [("bon", 3), ("cbs", 4)])
def test_whole_answers_one_call_per_draw_labelled_bon_approx(pair, route, draws):
    srv, up = pair
    raw = chat(srv, route)
    r = raw.parse()
    # A CBS route cannot chunk an upstream that cannot continue: one round of whole answers.
    assert raw.headers["x-w2s-mode"] == "bon-approx" and raw.headers["x-w2s-rounds"] == "1"
    assert raw.headers["x-w2s-upstream-calls"] == str(draws) and len(up.requests) == draws
    assert all(len(req.continuations) == 1 and req.continuations[0].prefix == "" for req in up.requests)
    # The conversation went whole: instructions for the system prompt, the turns as input.
    assert list(up.requests[0].prompt.messages) == [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "hi"}]
    # The upstream's stop string is cut here (the Responses API takes none), and said as a stop.
    assert r.choices[0].message.content == " alpha beta gamma delta epsilon "
    assert r.choices[0].finish_reason == "stop"


def test_the_token_limit_and_usage_come_back_through_the_response_object(pair):
    srv, up = pair
    raw = chat(srv, "bon", max_tokens=3)
    r = raw.parse()
    assert up.requests[0].continuations[0].max_tokens == 3  # sent as max_output_tokens
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    assert int(raw.headers["x-w2s-upstream-completion-tokens"]) == 9  # 3 draws, usage read from each


def test_models_say_the_upstream_cannot_continue(pair):
    srv, _ = pair
    cards = {c.id: c.model_extra["w2s"] for c in openai.OpenAI(base_url=srv.v1, api_key="x").models.list()}
    assert cards["cbs"]["mode"] == "bon-approx" and cards["cbs"]["exact_continuation"] is False
    assert cards["cbs"]["upstream"]["continuation"] == "none (responses)" and cards["cbs"]["upstream"]["max_n"] == 1
