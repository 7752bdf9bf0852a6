"""Server building blocks without a server: admission, metrics, error mapping, wire models."""
from __future__ import annotations

import asyncio
import json

import anthropic
import openai
import pydantic
import pytest
from aiohttp import web

from tests.support.prom import parse_metrics
from w2s.proxy.api import protocol_anthropic as pa
from w2s.proxy.api import protocol_openai as po
from w2s.proxy.api import w2s_options
from w2s.proxy.api.wire_errors import anthropic_body, error_headers, openai_body
from w2s.proxy.core import errors
from w2s.proxy.core.errors import (
    Draining,
    InvalidRequest,
    Overloaded,
    UnsupportedField,
    W2SError,
)
from w2s.proxy.server import http_errors
from w2s.proxy.server.admission import Admission
from w2s.proxy.server.http_errors import as_w2s_error
from w2s.proxy.server.metrics import ProxyMetrics

# --- admission ------------------------------------------------------------------


async def test_admission_runs_n_queues_q_and_refuses_the_rest():
    adm = Admission(max_running=2, max_queue=1)
    await adm.acquire()
    await adm.acquire()
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert (adm.running, adm.waiting) == (2, 1)
    with pytest.raises(Overloaded) as e:
        await adm.acquire()
    assert e.value.status == 429 and e.value.retry_after >= 1
    adm.release()  # the slot passes straight to the waiter
    await asyncio.wait_for(waiter, 1)
    assert (adm.running, adm.waiting) == (2, 0)
    adm.release()
    adm.release()
    assert adm.running == 0


async def test_a_draining_server_refuses_its_queue_with_a_retryable_503_and_keeps_its_running_search():
    adm = Admission(max_running=1, max_queue=4)
    await adm.acquire()
    queued = [asyncio.ensure_future(adm.acquire()) for _ in range(2)]
    await asyncio.sleep(0)
    assert adm.reject_waiting(lambda: Draining("shutting down")) == 2
    for q in queued:
        with pytest.raises(Draining) as e:
            await q
        assert e.value.status == 503 and e.value.code == "draining"
        assert error_headers(e.value) == {"x-should-retry": "true", "Retry-After": "1"}  # a balancer re-sends it
    assert (adm.running, adm.waiting) == (1, 0)  # the running search keeps its slot
    adm.release()
    assert adm.running == 0


async def test_admission_is_fifo_and_a_cancelled_waiter_leaves_the_queue():
    adm = Admission(max_running=1, max_queue=5)
    await adm.acquire()
    order = []

    async def take(tag):
        await adm.acquire()
        order.append(tag)

    a, b, c = (asyncio.ensure_future(take(t)) for t in "abc")
    await asyncio.sleep(0)
    b.cancel()
    await asyncio.sleep(0)
    assert adm.waiting == 2
    adm.release()
    await asyncio.sleep(0)
    adm.release()
    await asyncio.gather(a, c)
    assert order == ["a", "c"]
    adm.release()
    assert adm.running == 0


# --- error mapping --------------------------------------------------------------


def every_error_class() -> list[type[W2SError]]:
    """W2SError and every subclass in the hierarchy's modules: a new one is checked without listing it here."""
    found, todo = [], [W2SError]
    while todo:
        cls = todo.pop(0)
        if cls.__module__ in (errors.__name__, http_errors.__name__):
            found.append(cls)
        todo += cls.__subclasses__()
    return found


def an_instance(cls: type[W2SError]) -> W2SError:
    try:
        return cls("what went wrong")
    except TypeError:  # a required keyword: when to come back
        return cls("what went wrong", retry_after=2.5)


# Anthropic's documented error types by status (docs.anthropic.com/en/api/errors); any other 4xx is an
# invalid_request_error, any other 5xx an api_error, or overloaded_error when coming back later helps.
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                   529: "overloaded_error"}


@pytest.fixture(scope="module")
def error_server(server_thread):
    """A loopback server that answers every request with `holder["error"]` in the API shape the path asks for."""
    holder: dict = {}

    async def answer(request: web.Request) -> web.Response:
        err = holder["error"]
        body = anthropic_body(err) if request.path.startswith("/anthropic") else openai_body(err)
        return web.json_response(body, status=err.status, headers=error_headers(err))

    async def up():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    runner, port = server_thread.run(up())
    yield holder, f"http://127.0.0.1:{port}"
    server_thread.run(runner.cleanup())


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_every_error_maps_to_both_wire_shapes(cls, error_server):
    """What the official SDKs make of each error, over HTTP: the status, the fields, and whether to retry."""
    holder, base = error_server
    err = holder["error"] = an_instance(cls)
    assert 400 <= err.status < 600
    oa = openai.OpenAI(base_url=f"{base}/openai/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    got = e.value
    assert got.status_code == err.status
    assert got.body["message"] == err.message and got.param == err.param and got.code == err.code
    assert isinstance(got.type, str) and got.type

    an = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as e:
        an.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    body = e.value.body
    assert e.value.status_code == err.status and body["type"] == "error"
    assert body["error"]["message"] == err.message
    if err.status in ANTHROPIC_TYPES:
        assert body["error"]["type"] == ANTHROPIC_TYPES[err.status]
    elif err.status < 500:  # another client error (405)
        assert body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == ("overloaded_error" if err.retryable else "api_error")

    # Retry: both SDKs read the same answer; only "come back later" errors say yes, and say when.
    for client, response in ((oa, got.response), (an, e.value.response)):
        assert client._should_retry(response) is err.retryable
    retry_after = got.response.headers.get("retry-after")
    assert (retry_after is not None) == err.retryable
    if retry_after is not None:
        assert int(retry_after) >= err.retry_after and int(retry_after) >= 1  # whole seconds, never early
    if err.status == 401:
        assert got.response.headers["www-authenticate"].startswith("Bearer")


def test_foreign_exceptions_become_w2s_errors_without_leaking_details():
    assert as_w2s_error(web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20)).status == 413
    assert as_w2s_error(json.JSONDecodeError("x", "{", 0)).status == 400
    bug = as_w2s_error(KeyError("secret-internal-name"))
    assert bug.status == 500 and "secret-internal-name" not in bug.message


def test_validation_errors_name_the_field():
    with pytest.raises(pydantic.ValidationError) as e:
        po.ChatCompletionRequest.model_validate_json('{"messages": [{"role": "user", "content": 5}]}')
    err = as_w2s_error(e.value)
    assert err.status == 400 and err.param == "messages[0].content"
    with pytest.raises(pydantic.ValidationError) as e:
        po.ChatCompletionRequest.model_validate_json('{"messages": [{"role": "user"}], "max_tokens": "7"}')
    assert as_w2s_error(e.value).param == "max_tokens"  # strict: a string is not a number
    with pytest.raises(pydantic.ValidationError) as e:
        po.ChatCompletionRequest.model_validate_json('{"messages": ')
    assert as_w2s_error(e.value).code == "invalid_json"


# --- wire models ----------------------------------------------------------------


def _chat(**kw) -> po.ChatCompletionRequest:
    return po.ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **kw})


@pytest.mark.parametrize("field, value", [
    ("functions", [{"name": "f"}]),  # the legacy form of tools (tools themselves: tests/unit/test_tools_api.py)
    ("function_call", {"name": "f"}),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5),
    ("some_new_field", 1),
])
def test_unsupported_openai_fields_are_refused_by_name(field, value):
    with pytest.raises(UnsupportedField) as e:
        _chat(**{field: value}).check_supported()
    assert e.value.param == field and e.value.status == 400


# What SDKs send by default or as a no-op, each beside a value of the same field that asks for more.
NEUTRAL_CASES = [  # (field, a value that asks for nothing this proxy cannot do, one that does)
    ("functions", [], [{"name": "f"}]),
    ("function_call", "auto", {"name": "f"}),
    ("logprobs", False, True),
    ("top_logprobs", 0, 3),
    ("frequency_penalty", 0, 0.5),
    ("presence_penalty", 0, 1.0),
    ("logit_bias", {}, {"50256": -100}),
]
# No effect on an answer at any value: bookkeeping fields.
HARMLESS = {"user": "u", "metadata": {"a": "b"}, "store": True, "parallel_tool_calls": True, "service_tier": "auto"}


@pytest.mark.parametrize("field, neutral, harmful", NEUTRAL_CASES)
def test_neutral_and_harmless_openai_fields_are_accepted(field, neutral, harmful):
    bare = _chat(temperature=0.3, seed=5)
    for req in (_chat(temperature=0.3, seed=5, **{field: neutral}),
                _chat(temperature=0.3, seed=5, **{field: neutral}, **HARMLESS)):
        req.check_supported()  # accepted: no UnsupportedField
        # ... and ignored: the same search and the same prompt as without the fields.
        assert req.search_overrides() == bare.search_overrides() == {"temperature": 0.3, "seed": 5}
        assert req.to_prompt() == bare.to_prompt()
    with pytest.raises(UnsupportedField) as e:  # the same field asking for more is refused by name
        _chat(**{field: harmful}, **HARMLESS).check_supported()
    assert e.value.param == field


def test_image_parts_and_legacy_function_messages_are_refused_by_path():
    req = _chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                                       {"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(UnsupportedField) as e:
        req.check_supported()
    assert e.value.param == "messages[0].content[1].type"
    with pytest.raises(UnsupportedField) as e:
        _chat(messages=[{"role": "function", "content": "r", "name": "f"}]).check_supported()
    assert e.value.param == "messages[0].role"


def test_openai_fields_become_search_overrides_and_w2s_wins():
    req = _chat(max_tokens=5, max_completion_tokens=7, temperature=0.2, n=2, stop="\n", seed=3,
                w2s={"w": 3, "n": 1, "trace": True})
    assert req.search_overrides() == {
        "max_tokens": 7, "temperature": 0.2, "n": 1, "seed": 3, "stop": ["\n"], "w": 3}
    assert w2s_options.trace(req.w2s) is True
    assert req.to_prompt().messages == ({"role": "user", "content": "hi"},)


CONTINUED = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}]


@pytest.mark.parametrize("flags, error", [
    ({}, None),  # a trailing assistant message is continued by default
    ({"continue_final_message": True, "add_generation_prompt": False}, None),  # vLLM's way to say the same
    ({"continue_final_message": True}, None),
    ({"add_generation_prompt": True}, (UnsupportedField, "add_generation_prompt")),  # a new turn: refused
    ({"continue_final_message": False}, (UnsupportedField, "continue_final_message")),
    ({"continue_final_message": True, "add_generation_prompt": True}, (InvalidRequest, "continue_final_message")),
])
def test_vllm_continue_flags_on_a_trailing_assistant_message(flags, error):
    req = _chat(messages=CONTINUED, **flags)
    if error is None:
        req.check_supported()
        assert req.to_prompt().prefill == "Well,"
        return
    with pytest.raises(error[0]) as e:
        req.check_supported()
    assert e.value.param == error[1] and e.value.status == 400


def test_vllm_flags_without_a_trailing_assistant_message():
    _chat(add_generation_prompt=True, continue_final_message=False).check_supported()  # the defaults: fine
    with pytest.raises(InvalidRequest) as e:
        _chat(continue_final_message=True).check_supported()  # nothing to continue
    assert e.value.param == "continue_final_message"


def test_top_k_is_a_search_override_and_minus_one_means_none():
    assert _chat(top_k=5).search_overrides() == {"top_k": 5}
    assert _chat(top_k=-1).search_overrides() == {} == _chat(top_k=0).search_overrides()
    with pytest.raises(pydantic.ValidationError):
        _chat(top_k=-2)


def test_anthropic_request_to_prompt_and_overrides():
    req = pa.MessagesRequest.model_validate({
        "model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "be nice", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stop_sequences": ["END"], "top_k": 5, "metadata": {"user_id": "u"},
    })
    req.check_supported()
    assert req.to_prompt().messages == ({"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"})
    assert req.search_overrides() == {"max_tokens": 9, "top_k": 5, "stop": ["END"]}


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),  # server tools: not ours to run
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages[0].content[0].type"),
])
def test_unsupported_anthropic_fields_are_refused_by_name(extra, param):
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedField) as e:
        pa.MessagesRequest.model_validate(body).check_supported()
    assert e.value.param == param


# --- metrics --------------------------------------------------------------------


def test_metrics_render_in_prometheus_text_format():
    m = ProxyMetrics()

    class Adm:
        running, waiting = 1, 3

    m.watch(Adm(), lambda: None)  # the engine is still being built: its readings are left out
    m.request_done("/v1/messages", "r", 200, 0.3)
    m.errors.labels(type='we"ird\n', status="400").inc()
    text = m.render().decode()
    assert "# TYPE w2s_requests_total counter" in text
    assert "# TYPE w2s_request_seconds histogram" in text
    got = parse_metrics(text)
    assert got['w2s_requests_total{endpoint="/v1/messages",route="r",status="200"}'] == 1
    assert got['w2s_request_seconds_bucket{endpoint="/v1/messages",le="0.25",route="r",status="200"}'] == 0
    assert got['w2s_request_seconds_bucket{endpoint="/v1/messages",le="+Inf",route="r",status="200"}'] == 1
    assert got["w2s_queue_depth"] == 3 and got["w2s_searches_running"] == 1 and got["w2s_ready"] == 0
    assert "w2s_scorer_batches_total" not in got
    assert 'type="we\\"ird\\n"' in text  # label values escaped


def test_a_failing_reading_leaves_the_rest_of_metrics_up():
    m = ProxyMetrics()

    class Adm:
        running, waiting = 0, 0

    class Broken:
        ready = True

        @property
        def scorer_stats(self):
            raise RuntimeError("boom")

        def generate_stats(self):
            return {}

    m.watch(Adm(), Broken)
    m.request_done("/v1/models", "-", 200, 0.01)
    got = parse_metrics(m.render())
    assert got["w2s_ready"] == 1 and got['w2s_requests_total{endpoint="/v1/models",route="-",status="200"}'] == 1
    assert "w2s_scorer_batches_total" not in got
