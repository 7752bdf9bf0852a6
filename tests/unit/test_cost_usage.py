"""Cached prompt tokens as each wire reports them, read into Chunk.cached_tokens / cache_write_tokens (#26)."""
from __future__ import annotations

from types import SimpleNamespace as NS

from w2s.providers.anthropic import _parse
from w2s.providers.openai_draws import Call, Ctx, chunks_of, parse
from w2s.providers.openai_responses import parse_response
from w2s.proxy.core.types import Prompt, SampleRequest


def chat_response(usage):
    choices = [NS(index=i, message=NS(content=f"text {i}", tool_calls=None), finish_reason="length")
               for i in range(2)]
    return NS(choices=choices, usage=usage)


def test_openai_cached_tokens_are_read_and_split_over_the_choices():
    usage = NS(prompt_tokens=200, completion_tokens=20, prompt_tokens_details=NS(cached_tokens=128))
    drawn = parse(chat_response(usage), 2, chat=True)
    assert drawn.cached_tokens == 128
    ctx = Ctx(SampleRequest(Prompt.raw("x"), []), [], [])
    chunks = chunks_of(drawn, ctx, [10, 10], 200, "up")
    assert [c.cached_tokens for c in chunks] == [64, 64] and sum(c.prompt_tokens for c in chunks) == 200
    assert Call([0, 1], "", 10, None).n == 2


def test_openai_without_details_or_with_a_dict_reports_what_is_there():
    assert parse(chat_response(NS(prompt_tokens=5, completion_tokens=2)), 2, chat=True).cached_tokens is None
    usage = NS(prompt_tokens=5, completion_tokens=2, prompt_tokens_details={"cached_tokens": 3})
    assert parse(chat_response(usage), 2, chat=True).cached_tokens == 3
    usage = NS(prompt_tokens=5, completion_tokens=2, prompt_tokens_details=NS(cached_tokens=None))
    assert parse(chat_response(usage), 2, chat=True).cached_tokens is None


def test_responses_api_input_tokens_details():
    resp = NS(status="completed", incomplete_details=None, output_text="hi",
              usage=NS(input_tokens=50, output_tokens=3, input_tokens_details=NS(cached_tokens=32)))
    assert parse_response(resp).cached_tokens == 32


def test_anthropic_cache_read_and_creation_are_shares_of_the_prompt():
    usage = NS(input_tokens=10, output_tokens=7, cache_read_input_tokens=900, cache_creation_input_tokens=90)
    resp = NS(content=[NS(type="text", text="hello")], stop_reason="max_tokens", usage=usage)
    chunk, had_usage = _parse(resp)
    assert had_usage and chunk.prompt_tokens == 1000
    assert (chunk.cached_tokens, chunk.cache_write_tokens) == (900, 90)
    usage = NS(input_tokens=10, output_tokens=7, cache_read_input_tokens=None, cache_creation_input_tokens=None)
    chunk, _ = _parse(NS(content=[NS(type="text", text="x")], stop_reason="end_turn", usage=usage))
    assert (chunk.cached_tokens, chunk.cache_write_tokens) == (0, 0)


# --- the engine: prices per upstream, max_cost_usd per request and per route ------------------------


def priced_config(prices: dict | None, route_search: dict | None = None):
    from w2s.proxy.core.config_load import parse_config

    up = {"provider": "local", "model": "m"} | ({"prices": prices} if prices else {})
    return parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"up": up},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"r": {"upstream": "up", "guide": "g",
                         "search": {"w": 2, "k": 2, "l": 1, "max_tokens": 8} | (route_search or {})}},
    }, "priced")


async def test_the_engine_prices_a_search_and_keeps_a_money_budget():
    import pytest

    from tests.support.scripted import scripted_engine
    from w2s.proxy.core.errors import InvalidRequest

    engine = scripted_engine(priced_config({"input": 3.0, "output": 15.0}))
    await engine.start()
    full = await engine.run(engine.plan("r"), Prompt.raw("x"))
    assert full.cost_usd == pytest.approx((full.upstream_prompt_tokens * 3 + full.upstream_completion_tokens * 15) / 1e6)
    capped = await engine.run(engine.plan("r", {"max_cost_usd": full.cost_usd / 3}), Prompt.raw("x"))
    assert capped.budget_exhausted and capped.best.finish_reason == "length"
    route_capped = scripted_engine(priced_config({"input": 3.0, "output": 15.0}, {"max_cost_usd": full.cost_usd / 3}))
    await route_capped.start()
    assert (await route_capped.run(route_capped.plan("r"), Prompt.raw("x"))).budget_exhausted

    unpriced = scripted_engine(priced_config(None))
    await unpriced.start()
    assert (await unpriced.run(unpriced.plan("r"), Prompt.raw("x"))).cost_usd is None
    with pytest.raises(InvalidRequest, match="has no prices"):
        unpriced.plan("r", {"max_cost_usd": 0.01})


# --- the batch summary: totals, per answer, the steering multiplier ------------------------------------


async def test_a_batch_summary_says_what_it_cost_and_its_steering_multiplier():
    from tests.support.scripted import scripted_engine
    from w2s.proxy.batch.input import BatchItem
    from w2s.proxy.batch.local import EngineRunner
    from w2s.proxy.batch.report import BatchReport

    engine = scripted_engine(priced_config({"input": 3.0, "output": 15.0}))
    await engine.start()
    runner, report = EngineRunner(engine), BatchReport(concurrency=1)
    body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
    outcomes = [await runner.execute(BatchItem(f"c{i}", "/v1/chat/completions", body, i)) for i in range(2)]
    for o in outcomes:
        assert o.ok and o.cost_usd > 0 and o.answer_tokens == 8 and o.completion_tokens > o.answer_tokens
        report.done += 1
        report.add_cost(o)
    text = "\n".join(report.lines())
    spent = sum(o.completion_tokens for o in outcomes)
    assert f"steering multiplier: {spent / 16:.1f}x" in text and "per answer" in text and "cost: $" in text
    assert report.cost_usd == sum(o.cost_usd for o in outcomes)
