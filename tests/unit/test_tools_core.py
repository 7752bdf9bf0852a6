"""Tools and structured output in the pure core: whole answers, calls scored as text, the output
format enforced (proxy/core/tools.py, proxy/core/search.py), over a scripted sampler and scorer."""
from __future__ import annotations

import json

import pytest

from w2s.proxy.core.errors import NoValidAnswer
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.search import search
from w2s.proxy.core.tools import (
    FunctionTool,
    OutputFormat,
    ToolCall,
    ToolSet,
    answer_text,
    check_output,
    parse_text_calls,
    text_turns,
)
from w2s.proxy.core.types import Chunk, Prompt, SampleRequest, SampleResult, ScoreItem, SearchParams

WEATHER = ToolSet((FunctionTool("get_weather", "Weather in a city",
                                {"type": "object", "properties": {"city": {"type": "string"}}}),))
SCHEMA = OutputFormat("json_schema", {"type": "object", "properties": {"n": {"type": "integer"}},
                                      "required": ["n"]}, name="count")


class Drawer:
    """Draw i answers `answers[i % len]`: a str (text) or a ToolCall."""

    name = "scripted"
    exact_continuation = True
    model_names = ()

    def __init__(self, answers):
        self.answers, self.requests = answers, []

    async def sample(self, request: SampleRequest) -> SampleResult:
        self.requests.append(request)
        chunks = []
        for i, _ in enumerate(request.continuations):
            a = self.answers[i % len(self.answers)]
            if isinstance(a, ToolCall):
                chunks.append(Chunk("", "stop", completion_tokens=5, prompt_tokens=3, tool_calls=(a,)))
            else:
                chunks.append(Chunk(a, "stop", completion_tokens=5, prompt_tokens=3))
        return SampleResult(chunks, calls=1)


class Session:
    def __init__(self, prefer: str):
        self.prefer, self.tokens_computed, self.items = prefer, 0, []

    async def score(self, items: list[ScoreItem]) -> list[float]:
        self.items += items
        return [float(self.prefer in it.text) for it in items]

    def close(self) -> None:
        pass


CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
PARAMS = SearchParams(w=2, k=2, l=4, max_tokens=32)


async def test_a_request_with_tools_draws_whole_answers_and_a_call_can_win():
    drawer, session = Drawer(["It is sunny.", CALL]), Session("get_weather")
    prompt = Prompt.chat([{"role": "user", "content": "weather?"}])
    prompt = Prompt(messages=prompt.messages, tools=WEATHER)
    mode = decide_mode(PARAMS, exact=True, whole=prompt.whole_answers)
    assert mode is SearchMode.BON  # CBS planned by l=4, but a call cannot be chunked
    result = await search(prompt, drawer, session, PARAMS, mode=mode)
    assert len(result.rounds) == 1 and drawer.requests[0].continuations[0].max_tokens == 32  # whole answers
    assert result.best.tool_calls == (CALL,) and result.best.text == ""
    # The guide read the call as text, next to the text answers it competed with.
    texts = {it.text for it in session.items}
    assert "It is sunny." in texts and any('"name": "get_weather"' in t and "Paris" in t for t in texts)


async def test_tool_choice_none_keeps_chunked_search():
    tools = ToolSet(WEATHER.tools, choice="none")
    assert not Prompt(messages=({"role": "user", "content": "x"},), tools=tools).whole_answers
    assert decide_mode(PARAMS, exact=False, whole=True) is SearchMode.BON_APPROX


async def test_invalid_json_is_never_returned_and_valid_wins_over_a_higher_score():
    drawer = Drawer(['{"n": "three"} best', '{"n": 3}', "not json", '{"m": 1}'])
    session = Session("best")  # the guide would pick the invalid one
    prompt = Prompt(messages=({"role": "user", "content": "count"},), output=SCHEMA)
    result = await search(prompt, drawer, session, PARAMS, mode=SearchMode.BON)
    assert result.best.text == '{"n": 3}'
    rejected = {c.text: c.rejected for c in result.rounds[0].candidates}
    assert rejected['{"n": 3}'] is None and "not JSON" in rejected["not json"]
    assert "validate" in rejected['{"m": 1}'] and "not JSON" in rejected['{"n": "three"} best']
    assert all(it.text == '{"n": 3}' for it in session.items)  # only valid candidates are scored


async def test_no_valid_candidate_is_a_502_with_its_own_code():
    prompt = Prompt(messages=({"role": "user", "content": "count"},), output=SCHEMA)
    with pytest.raises(NoValidAnswer) as e:
        await search(prompt, Drawer(["nope", '{"n": 1.5}']), Session("x"), PARAMS, mode=SearchMode.BON)
    assert e.value.status == 502 and e.value.code == "no_valid_structured_output"
    assert "candidate 0: not JSON" in e.value.message


def test_check_output_json_object_and_schema():
    assert check_output('{"a": 1}', OutputFormat("json_object")) is None
    assert "not an object" in check_output("[1]", OutputFormat("json_object"))
    assert check_output('{"n": 2}', SCHEMA) is None


def test_history_turns_as_text_for_a_template_without_a_tool_role():
    msgs = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL.as_message_call()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
    plain = text_turns(msgs, tool_role=False)
    assert plain[1] == {"role": "assistant", "content": answer_text("", (CALL,))}
    assert plain[2] == {"role": "user", "content": "<tool_response>\n18C\n</tool_response>"}
    assert text_turns(msgs, tool_role=True)[2] == {"role": "tool", "content": "18C"}


def test_calls_a_server_left_in_the_text_are_read_back():
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    rest, calls = parse_text_calls(text, WEATHER, lambda: "call_x")
    assert rest == "Let me check." and calls == (ToolCall("call_x", "get_weather", json.dumps({"city": "Oslo"})),)
    assert parse_text_calls("<tool_call>{\"name\": \"rm\"}</tool_call>", WEATHER, lambda: "x")[1] == ()


def test_a_guide_renders_tool_turns_in_its_own_template_or_as_text():
    from w2s.proxy.core.chat_template import TRANSCRIPT, ChatTemplate
    from w2s.proxy.core.rendering import render

    prompt = Prompt(messages=({"role": "user", "content": "weather?"},
                              {"role": "assistant", "content": None, "tool_calls": [CALL.as_message_call()]},
                              {"role": "tool", "tool_call_id": "call_1", "content": "18C"}))
    plain = render(prompt, chat_template=TRANSCRIPT).text  # no tool role: the result is a user turn
    assert '"name": "get_weather"' in plain and "User: <tool_response>\n18C\n</tool_response>" in plain
    with_tool = ChatTemplate("{% for m in messages %}{% if m.role == 'tool' %}[tool] {% endif %}"
                             "{{ m.role }}: {{ m.content }}\n{% endfor %}")
    text = render(prompt, chat_template=with_tool).text
    assert "[tool] tool: 18C" in text and "assistant: <tool_call>" in text


async def test_a_call_whose_arguments_do_not_fit_its_function_is_never_returned():
    bad_args = ToolCall("c2", "get_weather", '"paris"')  # what vLLM + SmolLM2 wrote under tool_choice required
    unknown = ToolCall("c3", "rm_rf", "{}")
    drawer, session = Drawer([bad_args, unknown, CALL, "text"]), Session("rm_rf")
    prompt = Prompt(messages=({"role": "user", "content": "weather?"},), tools=WEATHER)
    result = await search(prompt, drawer, session, PARAMS, mode=SearchMode.BON)
    assert result.best.tool_calls == (CALL,)
    why = {c.tool_calls[0].name + c.tool_calls[0].id: c.rejected for c in result.rounds[0].candidates if c.tool_calls}
    assert "is not of type 'object'" in why["get_weatherc2"]
    assert why["rm_rfc3"] == "calls 'rm_rf', which was not offered" and why["get_weathercall_1"] is None


async def test_under_tool_choice_required_a_text_answer_is_never_returned():
    tools = ToolSet(WEATHER.tools, choice="required")
    prompt = Prompt(messages=({"role": "user", "content": "weather?"},), tools=tools)
    result = await search(prompt, Drawer(["It is sunny.", CALL]), Session("sunny"), PARAMS, mode=SearchMode.BON)
    assert result.best.tool_calls == (CALL,)  # the guide preferred the text; required rules it out
    named = ToolSet(WEATHER.tools, choice="function", name="get_weather")
    with pytest.raises(NoValidAnswer, match="tool_choice get_weather: the answer makes no such call"):
        await search(Prompt(messages=prompt.messages, tools=named), Drawer(["no"]), Session("x"), PARAMS,
                     mode=SearchMode.BON)
