"""Tools and structured output on POST /v1/responses, and to a `mode: responses` upstream: the openai SDK
against a real proxy over a scripted tool-calling upstream (tests/support/tool_upstream.py)."""
from __future__ import annotations

import json

import openai
import pytest

from tests.support.scripted import ScriptedScorer
from tests.support.tool_upstream import ToolUpstream
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import ScoreItem
from w2s.proxy.engine import Engine

SHELL = {"type": "function", "name": "shell", "description": "Runs a command",
         "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
SEARCH = {"w": 2, "k": 2, "l": 4, "max_tokens": 64}


def prefers_calls(item: ScoreItem) -> float:
    return 10.0 if "<tool_call>" in item.text else float(len(item.text) % 7)


@pytest.fixture
def proxy(fresh_servers, server_thread):
    up = server_thread.run(ToolUpstream().start())
    base = {"base_url": up.v1, "model": "fake", "api_key": "unused", "max_retries": 0}
    config = parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"cont": {"provider": "openai", "mode": "chat-continue", **base},
                      "resp": {"provider": "openai", "mode": "responses", **base}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"cont": {"upstream": "cont", "guide": "g", "search": SEARCH},
                   "resp": {"upstream": "resp", "guide": "g", "search": SEARCH}},
    }, "tools-responses")
    engine = Engine(config, guides={"g": ScriptedScorer("g", prefers_calls)})
    server_thread.run(engine.start())
    yield fresh_servers(config, engine), up
    server_thread.run(engine.aclose())
    server_thread.run(up.close())


def oai(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)


@pytest.mark.parametrize("route, mode", [("cont", "bon"), ("resp", "bon-approx")])
def test_a_searched_call_is_a_function_call_item(proxy, route, mode):
    srv, up = proxy
    raw = oai(srv).responses.with_raw_response.create(model=route, input="List the files.", tools=[SHELL])
    r = raw.parse()
    (fc,) = r.output
    assert fc.type == "function_call" and fc.name == "shell" and json.loads(fc.arguments) == {"command": "ls"}
    assert fc.call_id and fc.id.startswith("fc_") and r.output_text == "" and r.status == "completed"
    assert raw.headers["x-w2s-mode"] == mode and r.tools[0].name == "shell"
    if route == "resp":  # the Responses upstream got function tools, one whole answer per call
        assert all(b["tools"][0]["name"] == "shell" and b["tool_choice"] == "auto" for b in up.bodies("responses"))


def test_the_call_streams_as_function_call_events(proxy):
    srv, _ = proxy
    with oai(srv).responses.stream(model="cont", input="List the files.", tools=[SHELL]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:] == ["response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert final.output[0].type == "function_call" and final.output[0].name == "shell"


@pytest.mark.parametrize("route", ["cont", "resp"])
def test_function_call_output_reaches_the_upstream_as_its_own_tool_turn(proxy, route):
    srv, up = proxy
    first = oai(srv).responses.create(model=route, input="List the files.", tools=[SHELL])
    fc = first.output[0]
    r = oai(srv).responses.create(model=route, tools=[SHELL], previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": fc.call_id, "output": "a.txt b.txt"}])
    assert r.output_text == "The tool said: a.txt b.txt"
    if route == "cont":
        msgs = up.bodies("chat")[-1]["messages"]
        assert msgs[-2]["tool_calls"][0]["id"] == fc.call_id and msgs[-2]["tool_calls"][0]["function"]["name"] == "shell"
        assert msgs[-1] == {"role": "tool", "tool_call_id": fc.call_id, "content": "a.txt b.txt"}
    else:
        items = up.bodies("responses")[-1]["input"]
        assert items[-2] == {"type": "function_call", "call_id": fc.call_id, "name": "shell",
                             "arguments": fc.arguments}
        assert items[-1] == {"type": "function_call_output", "call_id": fc.call_id, "output": "a.txt b.txt"}


@pytest.mark.parametrize("route", ["cont", "resp"])
def test_text_format_json_schema_gives_valid_json(proxy, route):
    srv, up = proxy
    fmt = {"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}}
    r = oai(srv).responses.create(model=route, input="A person, as JSON.", text=fmt, extra_body={"w2s": {"trace": True}})
    person = json.loads(r.output_text)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    assert r.text.format.type == "json_schema"
    rejected = [c for c in r.model_extra["w2s"]["rounds"][0]["candidates"] if c["rejected"]]
    assert rejected and all("not JSON" in c["rejected"] for c in rejected)
    sent = up.bodies("responses")[-1]["text"] if route == "resp" else up.bodies("chat")[-1]["response_format"]
    assert sent == fmt if route == "resp" else sent["type"] == "json_schema"


def test_tools_the_upstream_cannot_take_are_named_in_the_notes(proxy):
    srv, _ = proxy
    r = oai(srv).responses.create(model="cont", input="hi", tools=[SHELL, {"type": "web_search"}])
    assert any("tools[1] ('web_search')" in n and "not offered" in n for n in r.model_extra["w2s"]["notes"])
