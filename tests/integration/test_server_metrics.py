"""/metrics counts real requests: requests, latency, search rounds, upstream and scorer spend, errors."""
from __future__ import annotations

import openai
import pytest

from tests.support.configs import GUIDED

REVIEW = [{"role": "user", "content": "Write a short review of the movie Titanic."}]


def delta(before: dict, after: dict, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_a_real_search_and_a_bad_request(live):
    before = live.metrics()
    c = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, timeout=300)
    raw = c.chat.completions.with_raw_response.create(model=GUIDED, messages=REVIEW)
    h = raw.headers
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model=GUIDED, messages=[])
    after = live.metrics()

    ok = 'endpoint="/v1/chat/completions",route="w2s-default",status="200"'
    assert delta(before, after, f"w2s_requests_total{{{ok}}}") == 1
    assert delta(before, after, f"w2s_request_seconds_count{{{ok}}}") == 1
    assert delta(before, after, 'w2s_requests_total{endpoint="/v1/chat/completions",route="-",status="400"}') == 1
    assert delta(before, after, 'w2s_errors_total{status="400",type="invalid_request_error"}') == 1
    assert delta(before, after, 'w2s_searches_total{mode="cbs",outcome="ok",route="w2s-default"}') == 1
    assert delta(before, after, 'w2s_search_rounds_total{route="w2s-default"}') == int(h["x-w2s-rounds"])
    assert delta(before, after, 'w2s_upstream_calls_total{route="w2s-default"}') == int(h["x-w2s-upstream-calls"])
    assert delta(before, after, 'w2s_upstream_tokens_total{kind="completion",route="w2s-default"}') == int(
        h["x-w2s-upstream-completion-tokens"])
    assert delta(before, after, 'w2s_upstream_tokens_total{kind="prompt",route="w2s-default"}') == int(
        h["x-w2s-upstream-prompt-tokens"])
    assert delta(before, after, 'w2s_scorer_tokens_total{route="w2s-default"}') == int(h["x-w2s-scorer-tokens"]) > 0
    # The scorer batcher's own stats: forward passes and the rows in them.
    assert delta(before, after, "w2s_scorer_batches_total") >= 1
    assert delta(before, after, 'w2s_scorer_batch_rows_bucket{le="+Inf"}') == delta(
        before, after, "w2s_scorer_batches_total")
    assert delta(before, after, "w2s_scorer_rows_total") >= 2
    assert after["w2s_queue_depth"] == 0 and after["w2s_searches_running"] == 0 and after["w2s_ready"] == 1
