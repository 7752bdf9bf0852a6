"""Tools and structured output through the proxy: the openai and anthropic SDKs against a real proxy
whose upstreams are a scripted tool-calling server (tests/support/tool_upstream.py), guided by a scripted
guide. Whole answers searched and labelled, calls returned whole in each API's shape (streamed too),
tool results reaching the upstream intact, JSON validated, servers' shape differences learned."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.support.scripted import ScriptedScorer
from tests.support.tool_upstream import ToolUpstream
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import ScoreItem
from w2s.proxy.engine import Engine

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
SEARCH = {"w": 2, "k": 2, "l": 4, "max_tokens": 64}


def prefers_calls(item: ScoreItem) -> float:
    """The guide: a call beats text; among JSON answers, the higher age."""
    if "<tool_call>" in item.text:
        return 10.0
    try:
        return float(json.loads(item.text).get("age", 0))
    except (ValueError, AttributeError):
        return 0.0


def config(base: str, routes: dict | None = None):
    up = {"base_url": base, "model": "fake", "api_key": "unused", "max_retries": 0}
    anth = {**up, "base_url": base.removesuffix("/v1")}  # the anthropic SDK adds /v1 itself
    return parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"chat": {"provider": "openai", "mode": "chat-only", **up},
                      "cont": {"provider": "openai", "mode": "chat-continue", **up},
                      "comp": {"provider": "openai", "mode": "completions", **up},
                      "anth": {"provider": "anthropic", **anth}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": routes or {
            "tools-chat": {"upstream": "chat", "guide": "g", "search": SEARCH},
            "tools-cont": {"upstream": "cont", "guide": "g", "search": SEARCH},
            "tools-anth": {"upstream": "anth", "guide": "g", "search": SEARCH},
            "tools-pass": {"upstream": "cont", "guide": "g", "tools": "passthrough", "search": SEARCH},
            "sample": {"upstream": "cont", "guide": "g", "search": {"w": 1, "k": 1, "l": None, "max_tokens": 64}},
            "comp": {"upstream": "comp", "guide": "g", "search": SEARCH},
        },
    }, "tools")


@pytest.fixture
def proxy(fresh_servers, server_thread):
    """proxy(quirks=...) -> (the proxy server, the scripted tool-calling upstream)."""
    made = []

    def make(quirks=(), routes=None):
        up = server_thread.run(ToolUpstream(set(quirks)).start())
        engine = Engine(config(up.v1, routes), guides={"g": ScriptedScorer("g", prefers_calls)})
        server_thread.run(engine.start())
        made.append((up, engine))
        return fresh_servers(engine.config, engine), up

    yield make
    for up, engine in made:
        server_thread.run(engine.aclose())
        server_thread.run(up.close())


def oai(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)


@pytest.mark.parametrize("route, mode", [("tools-chat", "bon-approx"), ("tools-cont", "bon"),
                                         ("tools-anth", "bon")])
def test_a_searched_tool_call_comes_back_whole_as_tool_calls(proxy, route, mode):
    srv, up = proxy()
    raw = oai(srv).chat.completions.with_raw_response.create(model=route, messages=USER, tools=[WEATHER],
                                                             extra_body={"w2s": {"trace": True}})
    r = raw.parse()
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert raw.headers["x-w2s-mode"] == mode and raw.headers["x-w2s-rounds"] == "1"  # whole answers, one round
    trace = r.model_extra["w2s"]
    assert trace["mode"] == mode and any("a tool call cannot be split" in n for n in trace["notes"])
    cands = trace["rounds"][0]["candidates"]
    assert {bool(c["tool_calls"]) for c in cands} == {True, False}  # calls competed with text answers
    assert all(c["finished"] for c in cands)


def test_the_upstream_gets_the_tools_and_whole_answer_draws(proxy):
    srv, up = proxy()
    oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER],
                                     tool_choice={"type": "function", "function": {"name": "get_weather"}})
    (body,) = up.bodies("chat")  # 4 draws in one call with n
    assert body["n"] == 4 and body["tools"] == [WEATHER]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["max_tokens"] == 64  # a whole answer, not an l-token chunk
    assert "continue_final_message" not in body


def test_tool_results_in_history_reach_the_upstream_intact(proxy):
    srv, up = proxy()
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}]
    r = oai(srv).chat.completions.create(model="tools-chat", messages=history, tools=[WEATHER])
    assert r.choices[0].message.content == "The tool said: 18C and sunny" and r.choices[0].finish_reason == "stop"
    body = up.bodies("chat")[0]
    assert body["messages"][1:] == history[1:]


def test_a_streamed_tool_call_is_read_by_the_openai_sdk(proxy):
    srv, _ = proxy()
    stream = oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER], stream=True)
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"})]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # The SDK's own accumulator agrees.
    with oai(srv).chat.completions.stream(model="tools-cont", messages=USER, tools=[WEATHER]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_json_schema_answers_are_validated_and_never_streamed_as_a_prefix(proxy):
    srv, up = proxy()
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    raw = oai(srv).chat.completions.with_raw_response.create(model="tools-cont", messages=USER, response_format=fmt,
                                                             extra_body={"w2s": {"trace": True}})
    r = raw.parse()
    assert json.loads(r.choices[0].message.content) == {"name": "Paris2", "age": 5}  # the guide's pick, valid
    assert up.bodies("chat")[0]["response_format"] == fmt
    cands = r.model_extra["w2s"]["rounds"][0]["candidates"]
    assert sorted(bool(c["rejected"]) for c in cands) == [False, False, True]  # draws 0 and 3 (one text): not JSON
    assert all(c["score"] is None for c in cands if c["rejected"])  # never scored, never kept
    text = "".join(c.choices[0].delta.content or "" for c in oai(srv).chat.completions.create(
        model="tools-cont", messages=USER, response_format=fmt, stream=True) if c.choices)
    assert json.loads(text)["age"] == 5


def test_no_valid_candidate_is_a_502_with_its_own_code(proxy):
    srv, _ = proxy()
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    with pytest.raises(openai.InternalServerError) as e:
        oai(srv).chat.completions.create(model="sample", messages=USER, response_format=fmt)
    assert e.value.status_code == 502 and e.value.body["code"] == "no_valid_structured_output"
    assert "not JSON" in e.value.body["message"] and "Search notes" in e.value.body["message"]


def test_a_completions_upstream_refuses_tools_naming_the_route_and_the_alternatives(proxy):
    srv, up = proxy()
    with pytest.raises(openai.BadRequestError) as e:
        oai(srv).chat.completions.create(model="comp", messages=USER, tools=[WEATHER])
    msg = e.value.body["message"]
    assert e.value.body["code"] == "tools_not_supported" and e.value.body["param"] == "tools"
    assert "'comp'" in msg and "tools-chat" in msg and "tools-anth" in msg
    assert not up.requests
    # tool_choice none asks for no call: the search as planned (no whole answers), the tools still sent.
    r = oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER], tool_choice="none",
                                         extra_body={"w2s": {"trace": True}})
    assert not any("a tool call cannot be split" in n for n in r.model_extra["w2s"]["notes"])
    assert up.bodies("chat")[-1]["tool_choice"] == "none"


def test_a_tools_passthrough_route_skips_the_search(proxy):
    srv, up = proxy()
    raw = oai(srv).chat.completions.with_raw_response.create(model="tools-pass", messages=USER, tools=[WEATHER])
    assert raw.headers["x-w2s-mode"] == "passthrough" and raw.parse().choices[0].message.tool_calls
    assert up.bodies("chat")[0].get("n", 1) == 1


@pytest.mark.parametrize("quirk, learned", [
    ("no_json_schema", {"structured_output": "json_object+schema"}),
    ("no_null_content", {"null_content_with_tool_calls": "refused (sent as \"\")"}),
])
def test_shapes_a_server_refuses_are_learned_and_remembered(proxy, quirk, learned):
    srv, up = proxy(quirks=[quirk])
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"}]
    kw = {"response_format": fmt} if quirk == "no_json_schema" else {"tools": [WEATHER]}
    msgs = USER if quirk == "no_json_schema" else history
    for _ in range(2):
        r = oai(srv).chat.completions.create(model="tools-cont", messages=msgs, **kw)
        assert r.choices[0].message.content  # never failed for a shape the proxy could send differently
    assert len(up.requests) == 3  # one refusal, then the shape that works, remembered for the next request
    card = oai(srv).models.retrieve("tools-cont").model_extra["w2s"]["upstream"]
    assert learned.items() <= card.items() and card["tool_shapes_learned"]


def test_calls_a_server_leaves_in_its_text_are_read_back(proxy):
    srv, _ = proxy(quirks=["text_calls"])
    r = oai(srv).chat.completions.create(model="tools-chat", messages=USER, tools=[WEATHER])
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and r.choices[0].message.content is None


def test_a_server_without_auto_tool_choice_gets_the_tools_another_way(proxy):
    srv, up = proxy(quirks=["no_auto_choice"])
    r = oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER])
    last = up.bodies("chat")[-1]
    assert "tools" not in last and "<tools>" in last["messages"][0]["content"]  # said in the system prompt
    # The model answers in its own chat format (Hermes text): read back as a call.
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    forced = oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER],
                                              tool_choice="required")
    assert forced.choices[0].message.tool_calls and "You must call" in up.bodies("chat")[-1]["messages"][0]["content"]


def test_forced_calls_whose_arguments_do_not_fit_are_asked_for_as_json(proxy):
    srv, up = proxy(quirks=["bad_forced_args"])
    for _ in range(2):
        r = oai(srv).chat.completions.create(model="tools-cont", messages=USER, tools=[WEATHER],
                                             tool_choice="required")
        (call,) = r.choices[0].message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"].startswith("Paris")
    first, *_, last = up.bodies("chat")
    assert first["tool_choice"] == "required" and "tools" in first  # its calls did not fit: asked again as JSON
    assert "tools" not in last and last["response_format"]["json_schema"]["name"] == "tool_call"
    card = oai(srv).models.retrieve("tools-cont").model_extra["w2s"]["upstream"]
    assert card["tools"] == "api (forced calls as json_schema)"


# --- the Anthropic API --------------------------------------------------------------------------------

ANTH_TOOL = {"name": "get_weather", "description": "The weather in a city",
             "input_schema": WEATHER["function"]["parameters"]}


def ant(srv) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.base, api_key="unused", max_retries=0)


@pytest.mark.parametrize("route", ["tools-cont", "tools-anth"])
def test_the_anthropic_sdk_gets_a_tool_use_block(proxy, route):
    srv, up = proxy()
    m = ant(srv).messages.create(model=route, max_tokens=64, messages=USER, tools=[ANTH_TOOL])
    (block,) = m.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert m.stop_reason == "tool_use" and block.id.startswith("toolu_")
    # Its result, sent back as a tool_result block, reaches the upstream as a tool turn.
    follow = ant(srv).messages.create(model=route, max_tokens=64, tools=[ANTH_TOOL], messages=[
        *USER, {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18C"}]}])
    assert follow.content[0].text == "The tool said: 18C" and follow.stop_reason == "end_turn"
    if route == "tools-anth":
        last = up.bodies("messages")[-1]
        assert last["tools"][0]["name"] == "get_weather"
        result = {k: v for k, v in last["messages"][-1]["content"][0].items() if k != "cache_control"}
        assert result == {"type": "tool_result", "tool_use_id": block.id, "content": "18C"}
        assert last["messages"][-2]["content"][0]["type"] == "tool_use"
    else:
        assert up.bodies("chat")[-1]["messages"][-1] == {"role": "tool", "tool_call_id": block.id,
                                                          "content": "18C"}


def test_a_streamed_tool_use_is_read_by_the_anthropic_sdk(proxy):
    srv, _ = proxy()
    with ant(srv).messages.stream(model="tools-anth", max_tokens=64, messages=USER, tools=[ANTH_TOOL]) as s:
        final = s.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"} and final.stop_reason == "tool_use"


async def test_w2s_check_reports_tools_and_structured_output():
    from w2s.providers.openai import ChatContinueSampler
    from w2s.providers.probes import check

    up = await ToolUpstream({"no_json_schema"}).start()
    try:
        cfg = config(up.v1).upstreams["cont"]
        report = await check(ChatContinueSampler("cont", cfg))
    finally:
        await up.close()
    got = {v.capability: v for v in report.verdicts}
    assert got["tools (required)"].ok and "get_weather" in got["tools (required)"].detail
    assert got["tools (auto)"].ok and "tools sent as api" in got["tools (auto)"].detail
    # Its first draw is not JSON (the script's draw 0): said, with the shape learned from its refusal.
    assert got["structured output"].ok is False and "sent as json_object+schema" in got["structured output"].detail
