"""Bad input: each gets its precise status and error shape, and the server
answers a good request right after."""
from __future__ import annotations

import json

import openai
import pytest

from tests.support.configs import PASSTHROUGH

OK_MSG = [{"role": "user", "content": "Hello"}]


def chat(**kw) -> dict:
    return {"model": PASSTHROUGH, "messages": OK_MSG, "max_tokens": 2, **kw}


BIG = b'{"model": "gemma-passthrough", "messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'

OPENAI_CASES = [
    # id, body, status, param, error type, code
    ("malformed-json", b'{"model": "gemma-passthrough", "messages": [', 400, None, "invalid_request_error", "invalid_json"),
    ("empty-body", b"", 400, None, "invalid_request_error", "invalid_json"),
    ("not-an-object", b"[1, 2]", 400, None, "invalid_request_error", None),
    ("messages-wrong-type", chat(messages="hi"), 400, "messages", "invalid_request_error", None),
    ("temperature-wrong-type", chat(temperature="hot"), 400, "temperature", "invalid_request_error", None),
    ("max-tokens-as-string", chat(max_tokens="5"), 400, "max_tokens", "invalid_request_error", None),
    ("content-wrong-type", chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content",
     "invalid_request_error", None),
    ("bad-role", chat(messages=[{"role": "robot", "content": "x"}]), 400, "messages[0].role",
     "invalid_request_error", None),
    ("empty-messages", chat(messages=[]), 400, "messages", "invalid_request_error", None),
    ("missing-messages", {"model": PASSTHROUGH}, 400, "messages", "invalid_request_error", None),
    ("negative-max-tokens", chat(max_tokens=-3), 400, "max_tokens", "invalid_request_error", None),
    ("zero-max-completion-tokens", chat(max_completion_tokens=0), 400, "max_completion_tokens",
     "invalid_request_error", None),
    ("n-too-large", chat(n=1000), 400, "n", "invalid_request_error", None),
    ("temperature-out-of-range", chat(temperature=3.5), 400, "temperature", "invalid_request_error", None),
    ("unknown-model", chat(model="gpt-nonexistent"), 404, "model", "not_found_error", "model_not_found"),
    ("tools", chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), 400, "tools",
     "invalid_request_error", "tools_not_supported"),  # the test routes' upstream is local: no tool API
    ("logprobs", chat(logprobs=True), 400, "logprobs", "invalid_request_error", "unsupported_field"),
    ("bad-response-format", chat(response_format={"type": "xml"}), 400, "response_format",
     "invalid_request_error", None),
    ("image-part", chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
     400, "messages[0].content[0].type", "invalid_request_error", "unsupported_field"),
    ("unknown-search-option", chat(w2s={"beams": 3}), 400, "w2s.beams", "invalid_request_error", None),
    ("bad-search-value", chat(w2s={"w": 0}), 400, "w", "invalid_request_error", None),
    ("bad-trace-flag", chat(w2s={"trace": "yes"}), 400, "w2s.trace", "invalid_request_error", None),
    ("oversized-body", BIG, 413, None, "invalid_request_error", "request_too_large"),
]


def good_request_still_works(live) -> None:
    r = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0).chat.completions.create(
        model=PASSTHROUGH, messages=OK_MSG, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("body, status, param, etype, code", [c[1:] for c in OPENAI_CASES],
                         ids=[c[0] for c in OPENAI_CASES])
def test_bad_openai_requests(live, body, status, param, etype, code):
    got, headers, raw = live.post("/v1/chat/completions", body)
    assert got == status, raw
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["param"], err["type"], err["code"]) == (param, etype, code)
    assert err["message"] and headers["x-should-retry"] == "false"
    if param:
        assert param.split("[")[0] in err["message"]  # the message names the field too
    good_request_still_works(live)


ANTHROPIC_OK = {"model": PASSTHROUGH, "max_tokens": 2, "messages": OK_MSG}

ANTHROPIC_CASES = [
    ("malformed-json", b'{"model": ', 400, "invalid_request_error"),
    ("missing-max-tokens", {"model": PASSTHROUGH, "messages": OK_MSG}, 400, "invalid_request_error"),
    ("negative-max-tokens", {**ANTHROPIC_OK, "max_tokens": -1}, 400, "invalid_request_error"),
    ("empty-messages", {**ANTHROPIC_OK, "messages": []}, 400, "invalid_request_error"),
    ("system-role-in-messages", {**ANTHROPIC_OK, "messages": [{"role": "system", "content": "x"}]}, 400,
     "invalid_request_error"),
    ("temperature-above-1", {**ANTHROPIC_OK, "temperature": 1.5}, 400, "invalid_request_error"),
    ("image-block", {**ANTHROPIC_OK, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     400, "invalid_request_error"),
    ("unknown-model", {**ANTHROPIC_OK, "model": "claude-nonexistent"}, 404, "not_found_error"),
    ("oversized-body", BIG, 413, "request_too_large"),
]


@pytest.mark.parametrize("body, status, etype", [c[1:] for c in ANTHROPIC_CASES],
                         ids=[c[0] for c in ANTHROPIC_CASES])
def test_bad_anthropic_requests(live, body, status, etype):
    got, headers, raw = live.post("/v1/messages", body)
    assert got == status, raw
    parsed = json.loads(raw)
    assert parsed["type"] == "error" and set(parsed["error"]) == {"type", "message"}
    assert parsed["error"]["type"] == etype and parsed["error"]["message"]
    good_request_still_works(live)


def test_unknown_paths_and_methods_answer_in_api_shape(live):
    status, _, raw = live.get("/v1/nothing-here")
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"
    status, _, raw = live.get("/v1/chat/completions")
    assert status == 405 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = live.get("/v1/messages")
    assert status == 405 and json.loads(raw)["type"] == "error"
    good_request_still_works(live)


def test_sdk_errors_carry_the_fields(live):
    c = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nope", messages=OK_MSG)
    assert e.value.code == "model_not_found" and e.value.param == "model"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=PASSTHROUGH, messages=OK_MSG, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {}}}], tool_choice="required")
    assert e.value.param == "tools" and e.value.code == "tools_not_supported"
    good_request_still_works(live)
