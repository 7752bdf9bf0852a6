"""Real OpenAI-compatible servers misbehave; the proxy adapts, visibly.

The fault-injecting upstream (tests/support/fault_upstream.py) plays each way real
servers differ from their docs: it ignores `n`, answers a trailing assistant
message with a new turn, omits usage, leaves stop strings in its text. Each is
driven through the real proxy server with the real SDKs; the guide is scripted
(tests/support/scripted.py) since what is under test is the upstream side.
`w2s check` against each of them: tests/integration/test_check_command.py.
"""
from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.fault_upstream import Fault, FaultUpstream
from tests.support.scripted import ScriptedScorer
from w2s.proxy.core.config_load import parse_config

ROOT = Path(__file__).resolve().parents[2]
COUNT = [{"role": "user", "content": "Count from 1 to 30, separated by commas."}]


def config(fake: FaultUpstream, **up) -> dict:
    return {
        "models": {"m": {"source": "/never-loaded"}},
        "upstreams": {"odd": {"provider": "openai", "mode": "completions", "base_url": f"{fake.base_url}/v1",
                              "model": "fake", "api_key": "sk-odd-secret", "max_retries": 0, **up}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"odd-cbs": {"upstream": "odd", "guide": "g", "search": {"w": 2, "k": 2, "l": 2, "max_tokens": 4}},
                   "odd-pass": {"upstream": "odd", "passthrough": True, "search": {"max_tokens": 8}}},
    }


@pytest.fixture
def odd(fresh_servers, server_thread):
    """odd(fake_modes, **upstream_config) -> (server, fake): the proxy in front of a misbehaving server."""
    from w2s.proxy.engine import Engine

    made = []

    def make(fake_modes: dict | None = None, **up):
        fake = server_thread.run(FaultUpstream(**(fake_modes or {})).start())
        cfg = parse_config(config(fake, **up), "odd")
        engine = Engine(cfg, guides={"g": ScriptedScorer("g")})
        server_thread.run(engine.start())
        made.append((fake, engine))
        return fresh_servers(cfg, engine), fake

    yield make
    for fake, engine in made:
        server_thread.run(engine.aclose())
        server_thread.run(fake.close())


def client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)


def card(srv, route: str) -> dict:
    return client(srv).models.retrieve(route).model_extra["w2s"]


# --- n not honoured ---------------------------------------------------------------


def test_a_server_that_ignores_n_still_gets_every_planned_draw_and_its_limit_is_remembered(odd):
    srv, fake = odd({"ignore_n": True})
    raw = client(srv).completions.with_raw_response.create(model="odd-cbs", prompt="The film", max_tokens=4,
                                                          extra_body={"w2s": {"trace": True}})
    trace = raw.parse().model_extra["w2s"]
    assert len(trace["rounds"][0]["candidates"]) == 4  # W*K candidates, not the one choice per call
    assert all(rd["failed_chunks"] == 0 for rd in trace["rounds"]) and trace["lost_draws"] == 0
    assert raw.headers["x-w2s-lost-draws"] == "0" and raw.headers["x-w2s-mode"] == "cbs"
    assert any("returned 1 of 4 choices" in n for n in trace["notes"])
    assert fake.requests[0].body["n"] == 4  # asked once with n, as the docs say a server honours it
    assert card(srv, "odd-cbs")["upstream"] == {"name": "odd", "max_n": 1, "max_n_source": "learned",
                                                "continuation": "not probed"}
    assert srv.metrics()['w2s_upstream_max_n{upstream="odd"}'] == 1
    # Later requests know it: every draw is its own call, and the small `w2s` field says so without a trace.
    r = client(srv).completions.create(model="odd-cbs", prompt="The film", max_tokens=4)
    assert "n" not in fake.requests[-1].body
    assert any("ignores n beyond 1" in n for n in r.model_extra["w2s"]["notes"])


# --- a new turn instead of a continuation --------------------------------------------------


def test_a_server_that_starts_a_new_turn_is_never_used_for_cbs(odd):
    srv, fake = odd({"new_turn": True}, mode="chat-continue")
    assert card(srv, "odd-cbs")["mode"] == "cbs"  # not probed yet
    raw = client(srv).chat.completions.with_raw_response.create(model="odd-cbs", messages=COUNT, max_tokens=4,
                                                               extra_body={"w2s": {"trace": True}})
    r = raw.parse()
    trace = r.model_extra["w2s"]
    assert raw.headers["x-w2s-mode"] == "bon-approx" and trace["mode"] == "bon-approx"
    assert len(trace["rounds"]) == 1  # whole answers, one round: nothing stitched from restarts
    # `continuation: auto` probed each way of marking the partial answer, in order; none continued.
    probes = [x.body for x in fake.requests[:4]]
    assert all(b["temperature"] == 0 and b["messages"][-1]["content"] == "11, 12, 13, 14, 15, 16, 17, 18, 19, 2"
               for b in probes)
    assert probes[0]["continue_final_message"] is True and probes[1]["messages"][-1]["prefix"] is True
    assert probes[2]["messages"][-1]["partial"] is True
    assert probes[3]["messages"][-1] == {"role": "assistant", "content": "11, 12, 13, 14, 15, 16, 17, 18, 19, 2"}
    assert "continue_final_message" not in probes[3]
    assert all(x.body["messages"][-1]["role"] == "user" for x in fake.requests[4:])  # no prefix sent again
    assert any("does not continue a partial answer" in n for n in trace["notes"])
    info = card(srv, "odd-cbs")
    assert info["mode"] == "bon-approx" and info["upstream"]["continuation"] == "failed"


def test_the_same_server_honestly_continuing_runs_cbs(odd):
    srv, fake = odd(mode="chat-continue")
    raw = client(srv).chat.completions.with_raw_response.create(model="odd-cbs", messages=COUNT, max_tokens=4)
    assert raw.headers["x-w2s-mode"] == "cbs" and card(srv, "odd-cbs")["upstream"]["continuation"] == "verified"
    assert fake.requests[0].body["temperature"] == 0  # the probe came first, once
    assert sum(1 for x in fake.requests if x.body.get("temperature") == 0) == 1


def test_configured_to_fail_a_new_turn_server_is_a_clear_502(odd):
    srv, _ = odd({"new_turn": True}, mode="chat-continue", on_no_continuation="fail")
    with pytest.raises(openai.APIStatusError) as e:
        client(srv).chat.completions.create(model="odd-cbs", messages=COUNT, max_tokens=4)
    err = e.value.body
    assert e.value.status_code == 502 and err["code"] == "upstream_cannot_continue"
    assert "'odd'" in err["message"] and "continue_final_message" in err["message"] and "'0" not in err["message"]
    # A pass-through route needs no continuation: it still works.
    assert client(srv).chat.completions.create(model="odd-pass", messages=COUNT, max_tokens=4).choices


# --- usage, stop strings, lost draws ---------------------------------------------------------


def test_no_usage_is_estimated_and_said(odd):
    srv, _ = odd({"include_usage": False})
    r = client(srv).completions.create(model="odd-pass", prompt="The film", max_tokens=4)
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert any("reported no usage" in n for n in r.model_extra["w2s"]["notes"])


def test_a_stop_string_left_in_the_text_is_cut_here(odd):
    srv, _ = odd({"echo_stops": True})
    r = client(srv).completions.create(model="odd-pass", prompt="1, 2, 3, 4, 5", max_tokens=8, stop=[", 8"])
    (choice,) = r.choices
    assert choice.text == ", 6, 7" and choice.finish_reason == "stop"
    assert any("left a stop string" in n for n in r.model_extra["w2s"]["notes"])


def test_lost_draws_are_in_every_response_not_only_with_trace(odd):
    srv, fake = odd(max_n=2)
    fake.push(Fault.error(400, "bad luck"))  # one of round 0's two calls is refused: 2 of 4 draws lost
    raw = client(srv).completions.with_raw_response.create(model="odd-cbs", prompt="The film", max_tokens=4)
    r = raw.parse()
    assert raw.headers["x-w2s-lost-draws"] == "2" and r.model_extra["w2s"]["lost_draws"] == 2
    assert r.choices[0].text


# --- multi-turn chats to completions upstreams -------------------------------------------------

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a film."},
        {"role": "assistant", "content": "Up."}, {"role": "user", "content": "Another one?"}]


def test_a_format_string_that_would_cut_the_conversation_is_a_400(odd):
    srv, fake = odd(template="Q: {prompt}\nA:")
    with pytest.raises(openai.BadRequestError) as e:
        client(srv).chat.completions.create(model="odd-pass", messages=CHAT, max_tokens=4)
    msg = e.value.body["message"]
    assert e.value.body["code"] == "conversation_too_long" and "chat_template" in msg and "'odd'" in msg
    assert fake.count("/v1/completions") == 0


def test_a_chat_template_sends_every_turn(odd):
    jinja = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
             "{% if add_generation_prompt %}<assistant>{% endif %}")
    srv, fake = odd(chat_template=jinja)
    client(srv).chat.completions.create(model="odd-pass", messages=CHAT, max_tokens=4)
    assert fake.requests[0].body["prompt"] == ("<system>Be brief.</system>\n<user>Name a film.</user>\n"
                                                "<assistant>Up.</assistant>\n<user>Another one?</user>\n<assistant>")













