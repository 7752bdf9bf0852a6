"""A client that disconnects cancels its search, and so its upstream calls (real models)."""
from __future__ import annotations

import time

import openai

from tests.support.configs import GUIDED

REVIEW = [{"role": "user", "content": "Write a long review of the movie Titanic."}]


def test_disconnecting_mid_stream_stops_the_search(live):
    key_cancel = 'w2s_searches_cancelled_total{route="w2s-default"}'
    key_rounds = 'w2s_search_rounds_total{route="w2s-default"}'
    before = live.metrics()
    c = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)
    # 150 rounds of 2 tokens: minutes of work if nobody stopped it.
    stream = c.chat.completions.create(model=GUIDED, messages=REVIEW, stream=True,
                                       extra_body={"w2s": {"max_tokens": 300, "l": 2}})
    first = next(iter(stream))  # sent once round one is in
    assert first.choices[0].delta.role == "assistant"
    stream.close()  # hang up

    deadline = time.monotonic() + 30
    while live.metrics().get(key_cancel, 0) <= before.get(key_cancel, 0):
        assert time.monotonic() < deadline, "the search was not cancelled"
        time.sleep(0.1)
    rounds = live.metrics()[key_rounds]
    time.sleep(4)  # several rounds' worth of time
    after = live.metrics()
    assert after[key_rounds] == rounds, "rounds kept coming after the client left"
    assert after[key_rounds] - before.get(key_rounds, 0) < 20
    assert after['w2s_searches_total{mode="cbs",outcome="cancelled",route="w2s-default"}'] >= 1
    assert after["w2s_searches_running"] == 0
    # The model thread is free again: a new request gets an answer.
    r = c.chat.completions.create(model="gemma-passthrough", messages=REVIEW, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")
