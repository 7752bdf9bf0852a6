"""The Anthropic Messages API over the embedded config's real models, with the real SDK."""
from __future__ import annotations

import anthropic
import pytest

from tests.support.configs import GUIDED, PASSTHROUGH, TINY

REVIEW = [{"role": "user", "content": "Write a short review of the movie Titanic."}]


def client(live) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.base, api_key="unused", max_retries=0, timeout=300)


def aclient(live) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live.base, api_key="unused", max_retries=0, timeout=300)


def test_guided_message_in_anthropic_shape(live):
    raw = client(live).messages.with_raw_response.create(
        model=GUIDED, max_tokens=TINY["max_tokens"], system="You are a film critic.", messages=REVIEW)
    m = raw.parse()
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant" and m.model == GUIDED
    (block,) = m.content
    assert block.type == "text" and isinstance(block.text, str)
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    assert m.usage.input_tokens > 5 and 0 < m.usage.output_tokens <= TINY["max_tokens"]
    assert raw.headers["x-w2s-mode"] == "cbs" and int(raw.headers["x-w2s-scorer-tokens"]) > 0


async def test_guided_message_streams_async_with_system_blocks(live):
    async with aclient(live).messages.stream(
            model=GUIDED, max_tokens=TINY["max_tokens"], messages=REVIEW,
            system=[{"type": "text", "text": "You are a film critic."}],
            extra_body={"w2s": {"trace": True}}) as stream:
        events = [ev async for ev in stream]
        final = await stream.get_final_message()
    kinds = [e.type for e in events if e.type != "text"]  # "text" is the SDK's own convenience event
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    message_delta = next(e for e in events if e.type == "message_delta")
    trace = message_delta.model_extra["w2s"]
    assert "".join(deltas) == final.content[0].text == trace["answers"][0]["text"]
    assert final.stop_reason in ("end_turn", "max_tokens") and final.id.startswith("msg_")
    assert final.usage.output_tokens == trace["answers"][0]["completion_tokens"]
    assert final.usage.input_tokens > 5


def test_passthrough_with_stop_sequences_and_a_tiny_max_tokens(live):
    m = client(live).messages.create(model=PASSTHROUGH, max_tokens=8, stop_sequences=["e", "a"], messages=REVIEW)
    assert "e" not in m.content[0].text and "a" not in m.content[0].text
    if m.stop_reason != "max_tokens":  # 8 tokens without an 'e' or an 'a' is possible, if rare
        assert m.stop_reason == "stop_sequence" and m.stop_sequence in ("e", "a")
    m = client(live).messages.create(model=PASSTHROUGH, max_tokens=1, messages=REVIEW)
    assert m.usage.output_tokens == 1
    assert m.stop_reason in ("max_tokens", "end_turn")


def test_tools_to_an_upstream_without_a_tool_api_are_refused_in_anthropic_shape(live):
    with pytest.raises(anthropic.BadRequestError) as e:
        client(live).messages.create(model=PASSTHROUGH, max_tokens=4, messages=REVIEW,
                                     tools=[{"name": "t", "description": "d", "input_schema": {"type": "object"}}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    assert "has no tool API" in e.value.body["error"]["message"]  # the embedded upstream is local (docs/tools.md)
    assert e.value.response.headers["x-should-retry"] == "false"
