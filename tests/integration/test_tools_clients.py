"""Real clients with tools and structured output through the proxy, over the scripted tool-calling upstream
(tests/support/tool_upstream.py; no real tool-calling server fits the unit tier): LangChain's bind_tools
and with_structured_output, the Agents SDK running an agent with a function tool to its end through both
of its model classes (Responses and Chat Completions). The anthropic SDK and the openai SDK's streamed
call: tests/unit/test_tools_api.py; the Codex CLI: tests/system/test_codex_tools.py."""
from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.support.scripted import ScriptedScorer
from tests.support.tool_upstream import ToolUpstream
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import ScoreItem
from w2s.proxy.engine import Engine

SEARCH = {"w": 2, "k": 2, "l": 4, "max_tokens": 64}


def prefers_calls(item: ScoreItem) -> float:
    return 1000.0 if "<tool_call>" in item.text else float(len(item.text))


@pytest.fixture
def srv(fresh_servers, server_thread):
    up = server_thread.run(ToolUpstream().start())
    base = {"base_url": up.v1, "model": "fake", "api_key": "unused", "max_retries": 0}
    config = parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"cont": {"provider": "openai", "mode": "chat-continue", **base}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"agent": {"upstream": "cont", "guide": "g", "search": SEARCH}},
    }, "tools-clients")
    engine = Engine(config, guides={"g": ScriptedScorer("g", prefers_calls)})
    server_thread.run(engine.start())
    yield fresh_servers(config, engine)
    server_thread.run(engine.aclose())
    server_thread.run(up.close())


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"18C and sunny in {city}"


class Person(BaseModel):
    name: str
    age: int


def test_langchain_bind_tools_gets_a_tool_call(srv):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=srv.v1, api_key="unused", model="agent", max_retries=0)
    msg = llm.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    (call,) = msg.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"} and call["id"]
    assert msg.response_metadata["finish_reason"] == "tool_calls"


def test_langchain_with_structured_output_gets_a_valid_object(srv):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=srv.v1, api_key="unused", model="agent", max_retries=0)
    person = llm.with_structured_output(Person).invoke("Invent a person.")  # response_format json_schema
    assert isinstance(person, Person) and person.name.startswith("Paris")


@pytest.mark.parametrize("kind", ["responses", "chat"])
async def test_the_agents_sdk_runs_an_agent_with_a_function_tool_to_the_end(srv, kind):
    import openai
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=srv.v1, api_key="unused", max_retries=0)
    model = (OpenAIResponsesModel if kind == "responses" else OpenAIChatCompletionsModel)(
        model="agent", openai_client=client)
    agent = Agent(name="weather", instructions="Answer with the tool.", tools=[function_tool(get_weather)],
                  model=model)
    result = await Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output == "The tool said: 18C and sunny in Paris"
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    await client.close()
