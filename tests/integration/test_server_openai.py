"""The OpenAI API over the embedded config's real models, with the real SDK (sync and async)."""
from __future__ import annotations

import json
import threading
import time

import openai
import pytest

from tests.support.configs import GUIDED, PASSTHROUGH, TINY

REVIEW = [{"role": "user", "content": "Write a short review of the movie Titanic."}]


def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)


def aclient(live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)


def test_models_lists_every_route_with_its_mode_and_no_secret(live):
    c = client(live)
    cards = {m.id: m for m in c.models.list().data}
    assert list(cards) == list(live.engine.config.routes)  # every route, in config order
    modes = {k: v.model_extra["w2s"]["mode"] for k, v in cards.items()}
    assert {k: modes[k] for k in ("w2s-default", "w2s-bon4", "gemma-passthrough", "w2s-test", "passthrough")} == {
        "w2s-default": "cbs", "w2s-bon4": "bon", "gemma-passthrough": "passthrough", "w2s-test": "cbs",
        "passthrough": "passthrough"}
    assert [k for k, v in cards.items() if v.model_extra["w2s"]["default"]] == ["w2s-default"]
    assert all(m.object == "model" and m.owned_by == "w2s-proxy" for m in cards.values())
    raw = live.get("/v1/models")[2].decode()
    assert "api_key" not in raw and "base_url" not in raw and "source" not in raw
    assert c.models.retrieve("gemma-passthrough").id == "gemma-passthrough"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-route")


def test_guided_chat_answers_in_openai_shape_and_reports_the_search(live):
    """Also: the event loop stays free while the search runs (health answers at once)."""
    got = {}

    def call():
        got["raw"] = client(live).chat.completions.with_raw_response.create(model=GUIDED, messages=REVIEW)

    t = threading.Thread(target=call)
    t.start()
    health = []
    while t.is_alive():
        t0 = time.perf_counter()
        assert live.get("/health")[0] == 200
        health.append(time.perf_counter() - t0)
        time.sleep(0.2)
    t.join()
    assert health and max(health) < 1.0, health

    raw = got["raw"]
    r = raw.parse()
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == GUIDED
    assert abs(r.created - time.time()) < 600
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    u = r.usage
    assert 0 < u.completion_tokens <= TINY["max_tokens"] and u.prompt_tokens > 5
    # "length" only when the answer used the whole budget; otherwise it stopped on its own.
    assert choice.finish_reason == "stop" or (
        choice.finish_reason == "length" and u.completion_tokens == TINY["max_tokens"]), (choice, u)
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    h = raw.headers
    assert h["x-w2s-mode"] == "cbs" and int(h["x-w2s-rounds"]) >= 1
    assert int(h["x-w2s-scorer-tokens"]) > 0 and int(h["x-w2s-upstream-calls"]) >= 1
    # The search read the prompt once per draw and more: far above what usage bills.
    assert int(h["x-w2s-upstream-tokens"]) > u.total_tokens
    assert "w2s" not in r.model_extra  # no trace unless asked


async def test_guided_chat_streams_the_committed_prefix_async(live):
    stream = await aclient(live).chat.completions.create(
        model=GUIDED, messages=REVIEW, stream=True, stream_options={"include_usage": True},
        extra_body={"w2s": {"trace": True}})
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == GUIDED for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    last = chunks[-1]
    trace = last.model_extra["w2s"]
    assert text == trace["answers"][0]["text"] and finishes == [trace["answers"][0]["finish_reason"]]
    assert last.choices == [] and last.usage.completion_tokens == trace["answers"][0]["completion_tokens"]
    assert trace["mode"] == "cbs" and len(trace["rounds"]) >= 1
    assert {"candidates", "upstream_calls", "scorer_tokens", "sample_seconds"} <= set(trace["rounds"][0])


async def test_n_2_returns_two_distinct_answers(live):
    r = await aclient(live).chat.completions.create(model=GUIDED, messages=REVIEW, n=2, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content
    assert r.usage.completion_tokens <= 2 * TINY["max_tokens"]


def test_search_overrides_via_extra_body(live):
    raw = client(live).chat.completions.with_raw_response.create(
        model=GUIDED, messages=REVIEW, max_tokens=6,
        extra_body={"w2s": {"w": 1, "k": 3, "l": None, "trace": True}})
    r = raw.parse()
    trace = r.model_extra["w2s"]
    assert raw.headers["x-w2s-mode"] == "bon" and trace["mode"] == "bon"
    (round0,) = trace["rounds"]  # Best-of-N: one round of whole answers
    assert 1 <= len(round0["candidates"]) <= 3 and all(c["finished"] for c in round0["candidates"])
    assert r.usage.completion_tokens <= 6
    with pytest.raises(openai.BadRequestError) as e:
        client(live).chat.completions.create(model=GUIDED, messages=REVIEW, extra_body={"w2s": {"beams": 3}})
    assert e.value.body["param"] == "w2s.beams"


def test_early_rejection_per_request_via_extra_body(live):
    """`"w2s": {"reject_at": 1}`: two upstream calls a round, the cut draws in the trace, and a bad checkpoint a 400
    naming it."""
    raw = client(live).chat.completions.with_raw_response.create(
        model=GUIDED, messages=REVIEW, max_tokens=8,
        extra_body={"w2s": {"w": 2, "k": 2, "l": 4, "reject_at": 1, "trace": True}})
    trace = raw.parse().model_extra["w2s"]
    rounds = trace["rounds"]
    assert int(raw.headers["x-w2s-upstream-calls"]) == 2 * len(rounds) == sum(r["upstream_calls"] for r in rounds)
    cut = [c for r in rounds for c in r["candidates"] if c["cut_at"] is not None]
    assert cut and all(c["cut_at"] == 1 and not c["kept"] and c["state"] == "pruned" for c in cut)
    assert int(raw.headers["x-w2s-upstream-completion-tokens"]) <= len(rounds) * (4 * 1 + 2 * 3)
    with pytest.raises(openai.BadRequestError) as e:
        client(live).chat.completions.create(model=GUIDED, messages=REVIEW,
                                             extra_body={"w2s": {"l": 4, "reject_at": 4}})
    assert "reject_at" in e.value.body["message"]


def test_stop_strings_cut_the_answer(live):
    """Greedy, so the same answer with and without stop strings: the stopped one is the other cut
    just before the first stop string, and says it stopped."""
    greedy = dict(model=PASSTHROUGH, messages=REVIEW, max_tokens=12, temperature=0)
    full = client(live).chat.completions.create(**greedy).choices[0].message.content
    assert "e" in full or "a" in full, full  # a review of 12 tokens with neither: pick other stop strings
    r = client(live).chat.completions.create(**greedy, stop=["e", "a"])
    cut = min(i for i in (full.find("e"), full.find("a")) if i >= 0)
    assert r.choices[0].message.content == full[:cut]
    assert r.choices[0].finish_reason == "stop"


def test_passthrough_chat_streams_without_a_search(live):
    greedy = dict(model=PASSTHROUGH, messages=REVIEW, max_tokens=6, temperature=0)
    with client(live).chat.completions.with_streaming_response.create(**greedy, stream=True) as resp:
        assert resp.headers["x-w2s-mode"] == "passthrough"
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[:-1] == [None] * (len(chunks) - 1)  # only the last chunk says why it ended
    assert all(c["usage"] is None for c in chunks)  # include_usage not asked
    # The stream adds up to what the same greedy request answers in one piece, for the same reason.
    plain = client(live).chat.completions.create(**greedy).choices[0]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == plain.message.content
    assert finishes[-1] == plain.finish_reason


def test_completions_plain_and_streaming(live):
    c = client(live)
    raw = c.completions.with_raw_response.create(model=PASSTHROUGH, prompt="The movie was", max_tokens=6, seed=1)
    r = raw.parse()
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == PASSTHROUGH
    assert r.choices[0].text and r.usage.completion_tokens <= 6
    assert raw.headers["x-w2s-rounds"] == "1" and raw.headers["x-w2s-scorer-tokens"] == "0"
    chunks = list(c.completions.create(model=PASSTHROUGH, prompt="The movie was", max_tokens=6, seed=1, stream=True,
                                       stream_options={"include_usage": True}))
    assert all(ch.object == "text_completion" and ch.id == chunks[0].id for ch in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage == r.usage  # the usage chunk comes last
    # The same seed draws the same answer: the stream adds up to the plain one, for the same reason.
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == r.choices[0].text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == r.choices[0].finish_reason
