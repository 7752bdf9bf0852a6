"""Remote samplers (real openai/anthropic SDKs) against a fault-injecting fake upstream.

Loopback only. Backoff is shortened through the samplers' RetryPolicy so the
whole file runs in a few seconds; the one deliberate wait is Retry-After: 1.
"""
from __future__ import annotations

import asyncio
import logging
import time
import traceback

import pytest

from tests.support.fault_samplers import (  # noqa: F401 (fake_upstream, offline_key: fixtures)
    PROMPT,
    SECRET,
    anthropic_sampler,
    cfg,
    fake_upstream,
    offline_key,
    openai_sampler,
    req,
)
from tests.support.fault_upstream import Fault, last_message
from w2s.providers.anthropic import AnthropicSampler, restore_whitespace, split_prefill
from w2s.providers.limits import Limiter, RateLimiter
from w2s.providers.openai import OpenAISampler
from w2s.providers.openai_draws import cut_at_stops, split_stops
from w2s.providers.registry import make_sampler
from w2s.providers.tokens import split_total
from w2s.proxy.core.errors import InvalidRequest, UpstreamError, UpstreamRefused

pytestmark = pytest.mark.usefixtures("offline_key")


# -- request shape -----------------------------------------------------------

async def test_registry_builds_both_samplers(fake):
    for provider, cls in (("openai", OpenAISampler), ("anthropic", AnthropicSampler)):
        s = make_sampler("x", cfg(provider, fake), None)
        assert isinstance(s, cls) and s.exact_continuation
        await s.aclose()


async def test_completions_groups_identical_prefixes_into_one_call_with_n(fake):
    s = openai_sampler(fake, template="Q: {prompt}\nA:")
    r = await s.sample(req(("", 5), ("", 5), (" Hel", 5), ("", 5), (" Hel", 5), ("", 3), seed=7))
    await s.aclose()
    bodies = sorted((x.body for x in fake.requests), key=lambda b: (b["prompt"], b["max_tokens"]))
    assert [(b["prompt"], b.get("n", 1), b["max_tokens"]) for b in bodies] == [
        ("Q: Say hi.\nA:", 1, 3), ("Q: Say hi.\nA:", 3, 5), ("Q: Say hi.\nA: Hel", 2, 5)]
    assert all(b["seed"] == 7 and "top_p" not in b for b in bodies)
    assert r.calls == 3 and r.exact
    assert [c.text for c in r.chunks] == [" c0", " c1", " c0", " c2", " c1", " c0"]
    # Usage sums equal the API's per call: prompt 7 per call, completion 3 per choice.
    assert sum(c.prompt_tokens for c in r.chunks) == 3 * 7
    assert sum(c.completion_tokens for c in r.chunks) == 3 * 6
    assert all(c.error is None and c.finish_reason == "length" for c in r.chunks)


async def test_completions_splits_n_above_max_n_with_distinct_seeds(fake):
    s = openai_sampler(fake, max_n=2)
    r = await s.sample(req(*[("x", 4)] * 5, seed=100))
    await s.aclose()
    sent = sorted((b.body.get("n", 1), b.body["seed"]) for b in fake.requests)
    assert sent == [(1, 102), (2, 100), (2, 101)]
    assert r.calls == 3 and len(r.chunks) == 5 and all(c.error is None for c in r.chunks)


def test_derived_seeds_stay_in_int64():
    """Search seeds are seed * 1_000_003 + round: a large client seed must still go out as an int64."""
    from w2s.providers.openai_draws import plan_calls

    big = 2**63 - 1
    calls = plan_calls(req(*[("", 4)] * 3, seed=big * 1_000_003 + 2), max_n=2)
    assert all(0 <= c.seed < 2**63 for c in calls) and len({c.seed for c in calls}) == 2


async def test_max_n_1_never_sends_n(fake):
    s = openai_sampler(fake, max_n=1)
    r = await s.sample(req(*[("", 4)] * 3))
    await s.aclose()
    assert fake.count() == 3 and all("n" not in x.body for x in fake.requests)
    assert r.calls == 3


async def test_a_server_ignoring_n_is_found_on_its_first_short_answer_and_the_rest_drawn_at_once(fake):
    fake.ignore_n = True
    s = openai_sampler(fake, mode="chat-continue")
    r = await s.sample(req(("", 4), ("", 4), ("", 4), seed=3))
    assert all(c.error is None for c in r.chunks) and len({c.text for c in r.chunks}) == 3
    assert [x.body.get("n", 1) for x in fake.requests] == [3, 1, 1]  # the two missing, drawn in parallel
    assert len({x.body["seed"] for x in fake.requests}) == 3  # each redraw with its own seed
    assert r.calls == 3 and s.max_n == 1 and s.capabilities()["max_n_source"] == "learned"
    assert any("returned 1 of 3 choices" in n for n in r.notes)
    # Remembered: the next round asks for one draw a call from the start, and says so.
    r2 = await s.sample(req(("", 4), ("", 4)))
    await s.aclose()
    assert [x.body.get("n", 1) for x in fake.requests[3:]] == [1, 1] and r2.calls == 2
    assert any("ignores n beyond 1" in n for n in r2.notes)


async def test_chat_continue_sends_the_partial_answer_with_continue_flags(fake):
    s = openai_sampler(fake, mode="chat-continue", extra_body={"chat_template_kwargs": {"x": 1}})
    await s.sample(req(("The answer", 6), ("", 6), top_k=20))
    await s.aclose()
    by_last = {last_message(x.body)["role"]: x.body for x in fake.requests}
    cont, plain = by_last["assistant"], by_last["user"]
    assert last_message(cont)["content"] == "The answer"
    assert cont["continue_final_message"] is True and cont["add_generation_prompt"] is False
    assert cont["max_tokens"] == 6 and cont["top_k"] == 20 and cont["chat_template_kwargs"] == {"x": 1}
    assert "continue_final_message" not in plain and "add_generation_prompt" not in plain


async def test_chat_only_draws_whole_answers_and_refuses_prefixes(fake):
    s = openai_sampler(fake, mode="chat-only")
    assert s.exact_continuation is False
    with pytest.raises(InvalidRequest):
        await s.sample(req(("partial", 5)))
    assert fake.count() == 0
    r = await s.sample(req(("", 5), ("", 5)))
    await s.aclose()
    body = fake.requests[0].body
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body and body["n"] == 2
    assert r.exact is False and [c.text for c in r.chunks] == [" m0", " m1"]


async def test_no_usage_is_estimated_with_tiktoken(fake):
    fake.include_usage = False
    s = openai_sampler(fake)
    r = await s.sample(req(("", 5), ("", 5)))
    await s.aclose()
    assert all(c.completion_tokens >= 1 for c in r.chunks)
    assert sum(c.prompt_tokens for c in r.chunks) >= 3


def test_stops_beyond_four_are_applied_locally():
    sent, local = split_stops(["a", "b", "", "c", "d", "e", "a", "END"])
    assert sent == ["a", "b", "c", "d"] and local == ["e", "END"]
    assert cut_at_stops("xxENDyye", "length", local) == ("xx", "stop")
    assert cut_at_stops("ok", "length", local) == ("ok", "length")


def test_split_total_is_exact():
    assert split_total(10, [1, 1, 1]) == [4, 3, 3]
    assert split_total(7, [5, 0]) == [7, 0]
    assert sum(split_total(13, [3, 9, 2])) == 13
    assert split_total(4, [0, 0]) == [2, 2]



# -- Anthropic prefill -------------------------------------------------------

def test_prefill_whitespace_split_and_restore():
    assert split_prefill("Hello, ") == ("Hello,", " ")
    assert split_prefill("a\n\n") == ("a", "\n\n")
    assert restore_whitespace(" world", " ") == "world"
    assert restore_whitespace("\nworld", " ") == "\nworld"  # not re-emitted: kept as returned
    assert restore_whitespace("x", "") == "x"


async def test_anthropic_request_shape(fake):
    fake.rule = lambda path, body: Fault.ok(" world", "end_turn")
    s = anthropic_sampler(fake, stop=["\n\nHuman:"])
    r = await s.sample(req(("Hello, ", 7), ("", 7), stop=("END",), top_k=5))
    await s.aclose()
    by_role = {last_message(x.body)["role"]: x.body for x in fake.requests}
    pre, plain = by_role["assistant"], by_role["user"]
    assert last_message(pre)["content"] == "Hello,"  # trailing whitespace never sent
    assert pre["system"] == "Be brief." and pre["max_tokens"] == 7 and pre["top_k"] == 5
    assert pre["stop_sequences"] == ["END", "\n\nHuman:"] and "top_p" not in pre
    assert pre["messages"][0]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [m["role"] for m in plain["messages"]] == ["user"]
    assert r.chunks[0].text == "world" and r.chunks[1].text == " world"
    assert all(c.finish_reason == "stop" and c.prompt_tokens == 11 for c in r.chunks)


async def test_prefill_refusal_switches_to_whole_answers(fake, caplog):
    caplog.set_level(logging.WARNING, logger="w2s")

    def refuse_prefill(path, body):
        return Fault.prefill_refusal() if last_message(body)["role"] == "assistant" else None

    fake.rule = refuse_prefill
    s = anthropic_sampler(fake)
    assert s.exact_continuation
    # Found mid-search: each refused draw is redrawn as a whole answer, exact=False.
    r = await s.sample(req(("Partial", 5), ("Partial", 5), ("Other ", 5)))
    assert s.exact_continuation is False and r.exact is False and s.stats.retries == 0
    assert all(c.error is None and c.text == " a0" for c in r.chunks)
    assert fake.count() == 6
    assert sorted(last_message(x.body)["role"] for x in fake.requests) == ["assistant"] * 3 + ["user"] * 3
    warnings = [m for m in caplog.records if "refuses assistant prefill" in m.getMessage()]
    assert len(warnings) == 1  # three refusals, one warning

    # The next call sends no prefill at all, even for a prefix.
    r = await s.sample(req(("", 5), ("Partial", 5)))
    assert r.exact is False and all(c.error is None for c in r.chunks)
    assert fake.count() == 8 and all(last_message(x.body)["role"] == "user" for x in fake.requests[6:])
    await s.aclose()


# -- secrets -----------------------------------------------------------------

async def test_api_key_never_logged_or_in_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2", "w2s"):
        caplog.set_level(logging.DEBUG, logger=name)
    leaky = f"Incorrect API key provided: {SECRET}"
    errors = []
    for make in (openai_sampler, anthropic_sampler):
        fake.push(Fault.error(429, retry_after="0"), Fault.error(401, leaky))
        s = make(fake)
        with pytest.raises(UpstreamRefused) as ei:
            await s.sample(req(("", 4)))
        errors.append(ei.value)
        fake.rule = lambda path, body: Fault.error(500, leaky)
        with pytest.raises(UpstreamError) as ei:
            await s.sample(req(("", 4)))
        errors.append(ei.value)
        fake.rule = None
        await s.aclose()
    assert all(x.had_auth for x in fake.requests)  # the key was really sent
    assert caplog.records and any(r.name.startswith("w2s") for r in caplog.records)
    for rec in caplog.records:
        assert SECRET not in rec.getMessage()
        assert rec.exc_info is None or SECRET not in "".join(traceback.format_exception(*rec.exc_info))
    for e in errors:
        assert SECRET not in str(e) and SECRET not in repr(e) and "***" in e.message
        assert SECRET not in "".join(traceback.format_exception(e))
        assert e.__cause__ is None and e.__context__ is None


# -- limits and cancellation -------------------------------------------------

async def test_concurrency_limit_caps_requests_in_flight(fake):
    fake.rule = lambda path, body: Fault.sleep(0.1)
    s = anthropic_sampler(fake, concurrency=2)
    r = await s.sample(req(*[("", 4)] * 6))
    await s.aclose()
    assert fake.max_in_flight == 2 and all(c.error is None for c in r.chunks)


async def test_rate_limiter_spaces_requests():
    rl = RateLimiter(per_minute=600, burst=1)  # 10 a second
    t0 = time.monotonic()
    for _ in range(4):
        await rl.acquire()
    assert time.monotonic() - t0 >= 0.28


async def test_limiter_deadline_raises_timeout():
    lim = Limiter(1, None, timeout=0.05)
    with pytest.raises(TimeoutError):
        await lim.run(lambda: asyncio.sleep(1))
    assert lim.in_flight == 0


async def test_cancelling_sample_cancels_requests_in_flight(fake):
    fake.rule = lambda path, body: Fault.sleep(5)
    s = openai_sampler(fake, max_n=1)
    task = asyncio.create_task(s.sample(req(("", 4), ("", 4))))
    for _ in range(100):
        if fake.count() == 2:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.limiter.in_flight == 0
    for _ in range(50):
        if all(x.disconnected for x in fake.requests):
            break
        await asyncio.sleep(0.02)
    assert fake.count() == 2 and all(x.disconnected for x in fake.requests)
    await s.aclose()




async def test_sampling_refusal_drops_sampling_controls_once(fake, caplog):
    caplog.set_level(logging.WARNING, logger="w2s")

    def refuse_sampling(path, body):
        if "temperature" in body:
            return Fault.error(400, "`temperature` is deprecated for this model.")
        return None

    fake.rule = refuse_sampling
    s = anthropic_sampler(fake)
    r = await s.sample(req(("", 4), ("", 4)))
    assert all(c.error is None for c in r.chunks) and s.send_sampling is False
    assert fake.count() == 4 and [("temperature" in x.body) for x in fake.requests[2:]] == [False, False]
    assert len([m for m in caplog.records if "refuses sampling controls" in m.getMessage()]) == 1
    await s.sample(req(("", 4)))
    assert fake.count() == 5 and "temperature" not in fake.requests[-1].body
    await s.aclose()


async def test_search_survives_a_prefill_refusal_found_mid_search(fake):
    from w2s.proxy.core.search import search
    from w2s.proxy.core.types import SearchParams

    class LengthScorer:  # any scorer will do: the search only needs numbers
        tokens_computed = 0

        async def score(self, items):
            return [float(len(i.text)) for i in items]

        def close(self):
            pass

    fake.rule = lambda path, body: (Fault.prefill_refusal() if last_message(body)["role"] == "assistant"
                                    else Fault.ok(" more", "max_tokens"))
    s = anthropic_sampler(fake)
    result = await search(PROMPT, s, LengthScorer(), SearchParams(w=1, k=2, l=3, max_tokens=9))
    await s.aclose()
    assert result.mode == "bon-approx" and [r.exact for r in result.rounds] == [True, False]
    # The fallback is an explicit transition, with its reason in the notes too.
    (change,) = result.mode_changes
    assert (change.before, change.after) == ("cbs", "bon-approx") and "round 1" in change.reason
    assert change.reason in result.notes
    assert result.best.text == " more"  # a whole fresh answer, not "prefix + answer"


async def test_usage_of_n_choices_credits_a_cut_choice_exactly_its_limit():
    """A choice cut by max_tokens wrote exactly max_tokens; the rest of the API's total goes to the ones
    that stopped (a split in proportion to tiktoken counts could give a cut one more than its limit)."""
    from w2s.providers import tokens
    from w2s.providers.openai_draws import Call, Drawn, completion_counts

    enc = await tokens.load_encoding("cl100k_base")
    drawn = Drawn([" a b c d e", " f g h i j", " q", " w e r t"], ["length", "length", "stop", "stop"], 10, 53)
    got = completion_counts(drawn, Call([0, 1, 2, 3], "", 15, None), enc)
    assert got[:2] == [15, 15] and sum(got) == 53 and got[2] < got[3]
    # A server whose total cannot cover the cut ones (it counts otherwise): split, still summing to it.
    short = Drawn([" a", " b"], ["length", "stop"], 10, 12)
    assert sum(completion_counts(short, Call([0, 1], "", 15, None), enc)) == 12
