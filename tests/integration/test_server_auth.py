"""API keys: Bearer or x-api-key, from the environment or literal; 401 in each API's shape."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.support.configs import PASSTHROUGH, TEST_KEY

MSG = [{"role": "user", "content": "Hello"}]


def test_missing_or_wrong_keys_get_401_in_each_api_shape(auth_live):
    status, headers, raw = auth_live.post("/v1/chat/completions", {"model": PASSTHROUGH, "messages": MSG})
    assert status == 401 and headers["x-should-retry"] == "false"
    assert json.loads(raw)["error"]["type"] == "authentication_error"
    assert json.loads(raw)["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=auth_live.v1, api_key="sk-wrong", max_retries=0).models.list()
    assert e.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as e2:
        anthropic.Anthropic(base_url=auth_live.base, api_key="sk-wrong", max_retries=0).messages.create(
            model=PASSTHROUGH, max_tokens=2, messages=MSG)
    assert e2.value.body["error"]["type"] == "authentication_error"


def test_a_good_key_works_as_bearer_or_x_api_key(auth_live):
    r = openai.OpenAI(base_url=auth_live.v1, api_key=TEST_KEY, max_retries=0).chat.completions.create(
        model=PASSTHROUGH, messages=MSG, max_tokens=2)  # Authorization: Bearer (key from os.environ/)
    assert r.choices[0].message.content is not None
    m = anthropic.Anthropic(base_url=auth_live.base, api_key="sk-literal", max_retries=0).messages.create(
        model=PASSTHROUGH, max_tokens=2, messages=MSG)  # x-api-key (literal key)
    assert m.content[0].type == "text"


def test_ops_endpoints_stay_open_and_no_keys_means_no_auth(auth_live, live):
    for path in ("/health", "/ready", "/metrics"):
        assert auth_live.get(path)[0] == 200
    assert live.get("/v1/models")[0] == 200  # no api_keys configured: no header needed
