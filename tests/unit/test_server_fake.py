"""Server behaviour that needs exact timing or faults: a real Engine over scripted
parts (tests/support/scripted.py). Lifecycle, overload, disconnects, failures before and
during a stream."""
from __future__ import annotations

import json
import threading
import time

import anthropic
import openai
import pytest

from tests.support.scripted import ScriptedSampler, ScriptedScorer, fake_config, scripted_engine
from w2s.proxy.core.errors import ModelLoadError

MSG = [{"role": "user", "content": "hi"}]


def wait_for(cond, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fake(fresh_servers, server_thread):
    """fake(sampler_kw..., server={...}) -> (server, upstream, guide), the engine already started."""

    def make(server: dict | None = None, loaded: bool = True, **sampler_kw):
        up, guide = ScriptedSampler("up", **sampler_kw), ScriptedScorer("g")
        engine = scripted_engine(fake_config(**(server or {})), up, guide)
        if loaded:
            server_thread.run(engine.start())
        return fresh_servers(engine.config, engine), up, guide

    return make


def oai(srv, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", **{"max_retries": 0, **kw})


def ant(srv, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.base, api_key="unused", **{"max_retries": 0, **kw})


# --- lifecycle ------------------------------------------------------------------


def test_health_answers_at_once_and_ready_flips_when_the_models_are_in(fake):
    srv, _, _ = fake(loaded=False, start_seconds=1.0)
    status, _, body = srv.get("/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = srv.get("/ready")
    assert status == 503 and json.loads(body)["status"] == "loading"
    # The API says "not yet, retry" rather than hanging or failing for good.
    status, headers, body = srv.post("/v1/chat/completions", {"model": "fake-cbs", "messages": MSG})
    assert status == 503 and headers["x-should-retry"] == "true" and "Retry-After" in headers
    assert json.loads(body)["error"]["type"] == "service_unavailable"
    wait_for(lambda: srv.get("/ready")[0] == 200, what="/ready")
    assert json.loads(srv.get("/ready")[2]) == {"status": "ready", "routes": ["fake-cbs", "fake-pass"]}
    assert oai(srv).chat.completions.create(model="fake-cbs", messages=MSG).choices[0].message.content


def test_a_failed_load_keeps_the_server_up_and_says_why(fake):
    srv, _, _ = fake(loaded=False, start_error=ModelLoadError("model file not found: /x.gguf"))
    wait_for(lambda: json.loads(srv.get("/ready")[2])["status"] == "failed", what="load failure")
    assert json.loads(srv.get("/ready")[2])["error"] == "model file not found: /x.gguf"
    assert srv.get("/health")[0] == 200
    status, headers, body = srv.post("/v1/messages", {"model": "fake-cbs", "max_tokens": 4, "messages": MSG})
    assert status == 503 and headers["x-should-retry"] == "false"
    assert json.loads(body)["error"]["type"] == "overloaded_error"


# --- admission ------------------------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after_and_the_admitted_finish(fake):
    srv, _, _ = fake(server={"max_concurrent_searches": 1, "max_queue": 1}, seconds=0.15)
    results = []

    def slow():
        results.append(oai(srv).chat.completions.create(model="fake-cbs", messages=MSG))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: srv.metrics().get("w2s_queue_depth") == 1 and srv.metrics()["w2s_searches_running"] == 1,
             what="one running, one queued")
    with pytest.raises(openai.RateLimitError) as e:
        oai(srv).chat.completions.create(model="fake-cbs", messages=MSG)
    r = e.value.response
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.headers["x-should-retry"] == "true"
    assert e.value.body["type"] == "rate_limit_error"
    with pytest.raises(anthropic.RateLimitError) as e2:
        ant(srv).messages.create(model="fake-cbs", max_tokens=4, messages=MSG)
    assert e2.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": e2.value.body["error"]["message"]}}
    for t in threads:
        t.join(30)
    m = srv.metrics()
    assert len(results) == 2 and m['w2s_searches_total{mode="cbs",outcome="ok",route="fake-cbs"}'] == 2
    assert m['w2s_requests_total{endpoint="/v1/chat/completions",route="fake-cbs",status="429"}'] == 1
    assert m['w2s_errors_total{status="429",type="rate_limit_error"}'] == 2


# --- cancellation ---------------------------------------------------------------


def test_a_client_that_disconnects_mid_stream_cancels_its_search(fake):
    srv, up, _ = fake(seconds=0.05)
    stream = oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, stream=True,
                                              extra_body={"w2s": {"max_tokens": 200, "l": 1}})  # 200 rounds: 10 s
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()  # hang up
    wait_for(lambda: up.cancelled == 1, timeout=5, what="the search to be cancelled")
    stopped_at = up.calls
    time.sleep(0.3)  # six rounds' time
    assert up.calls == stopped_at < 50
    m = srv.metrics()
    assert m['w2s_searches_cancelled_total{route="fake-cbs"}'] == 1
    assert m['w2s_searches_total{mode="cbs",outcome="cancelled",route="fake-cbs"}'] == 1
    assert m["w2s_searches_running"] == 0 and m.get('w2s_searches_total{mode="cbs",outcome="ok",route="fake-cbs"}', 0) == 0


def test_a_client_that_times_out_on_a_plain_request_cancels_its_search(fake):
    srv, up, _ = fake(seconds=0.05)
    with pytest.raises(openai.APITimeoutError):
        oai(srv, timeout=0.3).chat.completions.create(model="fake-cbs", messages=MSG,
                                                      extra_body={"w2s": {"max_tokens": 200, "l": 1}})
    wait_for(lambda: up.cancelled == 1, timeout=5, what="the search to be cancelled")
    assert srv.metrics()['w2s_searches_cancelled_total{route="fake-cbs"}'] == 1


# --- failures -------------------------------------------------------------------


def test_an_upstream_failure_before_any_output_is_a_plain_502_the_sdk_does_not_retry(fake):
    srv, _, guide = fake(fail_at_tokens=0)
    with pytest.raises(openai.InternalServerError) as e:
        # The SDK would retry a 502 twice; x-should-retry: false stops it re-running the search.
        oai(srv, max_retries=2).chat.completions.create(model="fake-cbs", messages=MSG, stream=True)
    assert e.value.status_code == 502 and e.value.response.headers["x-should-retry"] == "false"
    assert e.value.body["type"] == "upstream_error" and "scripted upstream down" in e.value.body["message"]
    assert guide.sessions == 1
    with pytest.raises(anthropic.InternalServerError) as e2:
        ant(srv, max_retries=2).messages.create(model="fake-cbs", max_tokens=4, messages=MSG)
    assert e2.value.status_code == 502 and e2.value.body["error"]["type"] == "api_error"
    assert guide.sessions == 2


def test_a_failure_after_streaming_began_is_an_error_event(fake):
    srv, _, _ = fake(fail_at_tokens=2)  # l=1: the third round fails
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, stream=True):
            got.append(chunk)
    assert got and "scripted upstream down" in e.value.message and e.value.body["type"] == "upstream_error"
    events = []
    with pytest.raises(anthropic.APIStatusError) as e2:
        with ant(srv).messages.stream(model="fake-cbs", max_tokens=4, messages=MSG) as s:
            for ev in s:
                events.append(ev.type)
    assert events[0] == "message_start" and "scripted upstream down" in str(e2.value)
    assert srv.get("/health")[0] == 200


def test_a_search_past_request_timeout_is_a_504(fake):
    srv, _, _ = fake(server={"request_timeout": 0.3}, seconds=0.1)
    with pytest.raises(openai.APIStatusError) as e:
        oai(srv).chat.completions.create(model="fake-cbs", messages=MSG)
    assert e.value.status_code == 504 and e.value.body["type"] == "upstream_timeout"
    assert srv.metrics()['w2s_searches_total{mode="cbs",outcome="timeout",route="fake-cbs"}'] == 1


# --- stream shapes --------------------------------------------------------------


def test_the_committed_prefix_streams_round_by_round_and_adds_up_to_the_answer(fake):
    srv, _, _ = fake()
    chunks = list(oai(srv).chat.completions.create(
        model="fake-cbs", messages=MSG, stream=True, stream_options={"include_usage": True},
        extra_body={"w2s": {"trace": True}}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    usage_chunk = chunks[-1]
    trace = usage_chunk.model_extra["w2s"]
    assert len(texts) >= len(trace["rounds"])  # one delta per round at least: it really streams
    assert "".join(texts) == trace["answers"][0]["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 8


def test_n_2_streams_each_choice_at_the_end(fake):
    srv, _, _ = fake()
    chunks = list(oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, stream=True, n=2,
                                                   extra_body={"w2s": {"trace": True}}))
    by_index: dict[int, str] = {}
    finish = {}
    for c in chunks:
        for ch in c.choices:
            by_index[ch.index] = by_index.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    answers = [a["text"] for a in chunks[-1].model_extra["w2s"]["answers"]]
    assert [by_index[0], by_index[1]] == answers and answers[0] != answers[1]
    assert finish == {0: "length", 1: "length"}


def test_request_fields_reach_the_search(fake):
    srv, up, _ = fake()
    r = oai(srv).chat.completions.create(model="fake-cbs", messages=MSG, max_completion_tokens=3, temperature=0.1,
                                         top_p=0.9, seed=7, stop=["x", "y"], n=2, extra_body={"w2s": {"trace": True}})
    p = r.model_extra["w2s"]["params"]  # the plan the search ran with, as the trace reports it
    assert (p["max_tokens"], p["temperature"], p["top_p"], p["seed"], p["stop"], p["n"]) == (3, 0.1, 0.9, 7, ["x", "y"], 2)
    drawn = up.requests[-1]  # and what the upstream was asked
    assert (drawn.temperature, drawn.top_p, drawn.stop) == (0.1, 0.9, ("x", "y"))
    m = ant(srv).messages.create(model="fake-pass", max_tokens=5, system="be brief", stop_sequences=["Z"],
                                 extra_body={"top_k": 4,  # SDK 2.x dropped top_k; older clients send it
                                             "w2s": {"trace": True}},
                                 messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                                           {"role": "user", "content": [{"type": "text", "text": "q2"}]}])
    p, drawn = m.model_extra["w2s"]["params"], up.requests[-1]
    assert (p["max_tokens"], p["top_k"], p["stop"], p["w"], p["k"], p["l"]) == (5, 4, ["Z"], 1, 1, None)  # one draw
    assert drawn.top_k == 4 and len(drawn.continuations) == 1
    assert drawn.prompt.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"})
    oai(srv).completions.create(model="fake-pass", prompt="Once upon", max_tokens=2)
    assert up.requests[-1].prompt.text == "Once upon" and up.requests[-1].continuations[0].max_tokens == 2


def test_without_an_engine_the_app_builds_one_in_the_background(fresh_servers):
    """The default path (`w2s serve`): Engine built and loaded off the loop; a bad
    model source leaves the server up, saying why on /ready."""
    srv = fresh_servers(fake_config())
    assert srv.get("/health")[0] == 200
    wait_for(lambda: json.loads(srv.get("/ready")[2])["status"] == "failed", timeout=60, what="load failure")
    assert "not found" in json.loads(srv.get("/ready")[2])["error"]
    status, _, body = srv.get("/v1/models")
    assert status == 503 and json.loads(body)["error"]["type"] == "service_unavailable"
    assert srv.metrics()["w2s_ready"] == 0
