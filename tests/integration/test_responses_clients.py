"""The Responses API and conversations on the embedded default, with the clients built this year:
the openai SDK (responses.create / responses.stream), the Agents SDK's OpenAIResponsesModel and
LangChain's ChatOpenAI (use_responses_api=True, and plain multi-turn chat completions), all against
the session's server over the real small models (Gemma 3 270M base upstream, SmolLM2 guides)."""
from __future__ import annotations

import openai
import pytest

from tests.support.configs import GUIDED

TURNS = [{"role": "user", "content": "What is a good movie to watch tonight?"},
         {"role": "assistant", "content": [{"type": "output_text", "text": "Try The Princess Bride."}]},
         {"role": "user", "content": [{"type": "input_text", "text": "Why do people love it?"}]}]
INSTRUCTIONS = "You are a friendly movie buff."


def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)


def trace_prompt(resp) -> str:
    return resp.model_extra["w2s"]["prompt"]["text"]


def test_sdk_create_takes_items_instructions_and_previous_response_id(live):
    c = client(live)
    first = c.responses.create(model=GUIDED, instructions=INSTRUCTIONS, input=TURNS, extra_body={"w2s": {"trace": True}})
    assert first.status == "completed" and first.output_text.strip() and first.model_extra["w2s"]["mode"] == "cbs"
    assert trace_prompt(first) == ("system: You are a friendly movie buff.\nuser: What is a good movie to watch "
                                   "tonight?\nassistant: Try The Princess Bride.\nuser: Why do people love it?")
    alone = c.responses.create(model=GUIDED, input="Why do people love it?")
    # The whole conversation reached the base model (a transcript), not just its last message.
    assert first.usage.input_tokens > alone.usage.input_tokens + 15
    second = c.responses.create(model=GUIDED, input="And a second film?", previous_response_id=first.id,
                                extra_body={"w2s": {"trace": True}})
    assert second.output_text.strip() and second.previous_response_id == first.id
    assert trace_prompt(second).endswith(f"assistant: {first.output_text}\nuser: And a second film?")
    assert c.responses.retrieve(second.id).output_text == second.output_text


def test_sdk_stream_sends_the_event_sequence_and_the_answer_adds_up(live):
    with client(live).responses.stream(model=GUIDED, instructions=INSTRUCTIONS, input=TURNS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text and final.output_text.strip()


async def test_agents_sdk_responses_model(live):
    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)  # nothing leaves the machine
    api = openai.AsyncOpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)
    agent = Agent(name="critic", instructions=INSTRUCTIONS,
                  model=OpenAIResponsesModel(model=GUIDED, openai_client=api))
    result = await Runner.run(agent, "Recommend a film for tonight.")
    assert isinstance(result.final_output, str) and result.final_output.strip()
    (raw,) = result.raw_responses
    stored = await api.responses.retrieve(raw.response_id)  # the Agents SDK leaves store on: kept here
    assert stored.output_text == result.final_output
    streamed = Runner.run_streamed(agent, "And one more?")
    kinds = [e.type async for e in streamed.stream_events()]
    assert "raw_response_event" in kinds and streamed.final_output.strip()


def test_langchain_with_the_responses_api(live):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=GUIDED, base_url=live.v1, api_key="unused", use_responses_api=True, max_retries=0)
    msg = llm.invoke([("system", INSTRUCTIONS), ("user", "A film for tonight?"), ("assistant", "Try Up."),
                      ("user", "Why that one?")])
    assert msg.text.strip() and msg.response_metadata["id"].startswith("resp_")
    chunks = list(llm.stream("Recommend a film."))
    assert "".join(c.text for c in chunks).strip()


def test_langchain_multi_turn_chat_to_the_embedded_default(live):
    """A newcomer's second turn: chat completions with history, to the default route (was a 400)."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=GUIDED, base_url=live.v1, api_key="unused", max_retries=0)
    history = [("system", INSTRUCTIONS), ("user", "What is a good movie to watch tonight?")]
    first = llm.invoke(history)
    assert first.content.strip()
    second = llm.invoke([*history, ("assistant", first.content), ("user", "Why do people love it?")])
    assert second.content.strip() and "User:" not in second.content  # the answer ends at the next turn


@pytest.mark.parametrize("field, value", [("tools", [{"type": "function", "name": "f", "parameters": {}}]),
                                          ("tool_choice", "required")])  # tools to a local upstream; none offered
def test_what_the_proxy_cannot_honour_is_a_400_naming_it(live, field, value):
    with pytest.raises(openai.BadRequestError) as e:
        client(live).responses.create(model=GUIDED, input="hi", **{field: value})
    assert e.value.body["param"] == field
