"""The cheaper searches and the cost accounting of proxy/core/search.py, over scripted parts: no model, seconds.

Adaptive expansion (k_tau, k_min), stop-when-decided (decide_after), the money budget (max_cost_usd) and cost_usd /
cached tokens (proxy/core/cost.py). The scripted guide prefers draws ending in 0 (+10 each), so round 0's
kept beams are " alpha0" (10) and " alpha1" (-1): 11 apart.
"""
from __future__ import annotations

import math

import pytest

from tests.support.invariants import check_invariants
from tests.support.scripted import ScriptedSampler, ScriptedScorer, words_chunk
from w2s.proxy.core.cost import Prices, Usage, cost_fields, cost_usd, tokens_affordable
from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Chunk, Prompt, SearchParams

PROMPT = Prompt.raw("Once upon a time")
PRICES = Prices(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)


async def run(params: SearchParams, sampler=None, scorer=None, **kw):
    sampler = sampler or ScriptedSampler()
    scorer = scorer or ScriptedScorer()
    result = await search(PROMPT, sampler, scorer.session(PROMPT), params, **kw)
    return result, sampler


def per_prefix(request) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in request.continuations:
        out[c.prefix] = out.get(c.prefix, 0) + 1
    return out


async def test_default_search_gives_every_kept_beam_k_continuations():
    params = SearchParams(w=2, k=3, l=1, max_tokens=3)
    result, up = await run(params)
    check_invariants(result, params)
    assert sorted(per_prefix(up.requests[1]).values()) == [3, 3]
    assert not any(c.pruned for rd in result.rounds for c in rd.candidates)
    kept = [c for c in result.rounds[0].candidates if c.kept]
    assert [c.draws for c in kept] == [3, 3]


async def test_adaptive_expansion_gives_beams_behind_fewer_continuations():
    params = SearchParams(w=2, k=3, l=1, max_tokens=3, k_tau=2.0)
    result, up = await run(params)
    check_invariants(result, params)
    # " alpha1" is 11 behind: max(k_min=1, round(3 * exp(-11 / 2))) = 1; the best gets k.
    assert round(3 * math.exp(-11 / 2)) == 0
    assert per_prefix(up.requests[1]) == {" alpha0": 3, " alpha1": 1}
    assert [c.draws for c in result.rounds[0].candidates if c.kept] == [3, 1]
    cbs, _ = await run(SearchParams(w=2, k=3, l=1, max_tokens=3))
    assert result.upstream_completion_tokens < cbs.upstream_completion_tokens


async def test_adaptive_expansion_with_k_min_0_prunes_and_the_trace_says_so():
    params = SearchParams(w=2, k=3, l=1, max_tokens=3, k_tau=2.0, k_min=0)
    result, up = await run(params)
    check_invariants(result, params)
    assert per_prefix(up.requests[1]) == {" alpha0": 3}
    pruned = [c for c in result.rounds[0].candidates if c.pruned]
    assert [c.text for c in pruned] == [" alpha1"] and pruned[0].kept and pruned[0].draws == 0
    assert not any(c.parent == result.rounds[0].candidates.index(pruned[0]) for c in result.rounds[1].candidates)
    assert result.best.finish_reason == "length" and result.best.text == " alpha0 beta0 gamma0"


async def test_a_close_beam_keeps_more_continuations_than_a_far_one():
    # Two draws the guide likes almost equally: the second is 0.5 behind, so it gets round(3 * e^-0.25) = 2.
    def near(item):
        return {" alpha0": 1.0, " alpha1": 0.5}.get(item.text, -5.0)

    params = SearchParams(w=2, k=3, l=1, max_tokens=2, k_tau=2.0)
    result, up = await run(params, scorer=ScriptedScorer(score=near))
    check_invariants(result, params)
    assert per_prefix(up.requests[1]) == {" alpha0": 3, " alpha1": 2}


async def test_decided_search_continues_only_the_leader():
    params = SearchParams(w=2, k=2, l=1, max_tokens=6, decide_after=1)
    result, up = await run(params)
    check_invariants(result, params)
    # Round 1's best (" alpha0 beta0") descends from round 0's best: decided there, so from round 2 on
    # only the leader is continued (k draws) and the other kept beam is pruned.
    assert [rd.decided for rd in result.rounds][:3] == [False, True, True]
    assert all(len(per_prefix(r)) == 1 for r in up.requests[2:])
    assert any(c.pruned for c in result.rounds[1].candidates)
    assert any("decide_after" in n for n in result.notes)
    cbs, _ = await run(SearchParams(w=2, k=2, l=1, max_tokens=6))
    assert result.best.text == cbs.best.text
    assert result.upstream_completion_tokens < cbs.upstream_completion_tokens


async def test_a_search_that_ends_before_the_lead_holds_is_plain_cbs():
    # Three rounds: the lead can hold for two at most, so decide_after=3 never fires and nothing changes.
    params = SearchParams(w=2, k=2, l=1, max_tokens=3, decide_after=3)
    result, _ = await run(params)
    cbs, _ = await run(SearchParams(w=2, k=2, l=1, max_tokens=3))
    check_invariants(result, params)
    assert not any(rd.decided for rd in result.rounds)
    assert (result.best.text, result.upstream_completion_tokens) == (cbs.best.text, cbs.upstream_completion_tokens)


def test_cheaper_options_are_validated():
    for bad in ({"k_tau": 0.0}, {"k_min": 5}, {"decide_after": 0}, {"max_cost_usd": 0.0}):
        with pytest.raises(InvalidRequest):
            SearchParams(w=2, k=2, **bad).validate()


# --- cost ------------------------------------------------------------------------------------------


def test_cost_is_tokens_times_prices_in_one_place():
    u = Usage(calls=2, prompt=1000, cached=600, cache_write=100, completion=50)
    # (300 * 3 + 600 * 0.3 + 100 * 3.75 + 50 * 15) / 1e6
    assert cost_usd(u, PRICES) == pytest.approx((900 + 180 + 375 + 750) / 1e6)
    assert cost_usd(u, None) is None
    # Unpriced cache reads and writes are billed as input, never undercounted.
    assert cost_usd(u, Prices(input=3.0, output=15.0)) == pytest.approx((1000 * 3 + 50 * 15) / 1e6)
    assert u.cached_share == pytest.approx(0.6)
    assert tokens_affordable(1e-3, 2, 100, PRICES) == int((1000 - 2 * 100 * 3) // 15)


def cached_chunk(prefix, sibling, limit):
    c = words_chunk(prefix, sibling, limit)
    c.cached_tokens = 4
    return c


async def test_cached_tokens_and_cost_are_summed_over_rounds():
    params = SearchParams(w=2, k=2, l=1, max_tokens=3)
    result, up = await run(params, ScriptedSampler(script=cached_chunk), prices=PRICES)
    assert result.upstream_cached_tokens == 4 * sum(len(r.continuations) for r in up.requests)
    assert result.upstream_cached_tokens == sum(rd.upstream_cached_tokens for rd in result.rounds)
    assert result.cost_usd == pytest.approx(sum(rd.cost_usd for rd in result.rounds))
    u = Usage(result.upstream_calls, result.upstream_prompt_tokens, result.upstream_cached_tokens, 0,
              result.upstream_completion_tokens)
    assert result.cost_usd == pytest.approx(cost_usd(u, PRICES))
    fields = cost_fields(result)
    assert fields["cached_tokens"] == result.upstream_cached_tokens and fields["cost_usd"] > 0
    unpriced, _ = await run(params)
    assert unpriced.cost_usd is None and "cost_usd" not in cost_fields(unpriced)


async def test_money_budget_stops_with_length_and_the_best_so_far():
    full, _ = await run(SearchParams(w=2, k=2, l=1, max_tokens=8), prices=PRICES)
    budget = full.cost_usd / 3
    params = SearchParams(w=2, k=2, l=1, max_tokens=8, max_cost_usd=budget)
    result, _ = await run(params, prices=PRICES)
    assert result.budget_exhausted
    assert result.best.finish_reason == "length" and result.best.text.startswith(" alpha0")
    assert len(result.rounds) < len(full.rounds)
    # It stops before a round it cannot pay for: at most the budget, give or take one round's prompts.
    assert result.cost_usd <= budget + max(rd.cost_usd for rd in result.rounds)


async def test_money_budget_without_prices_is_ignored_by_the_core():
    params = SearchParams(w=2, k=2, l=1, max_tokens=3, max_cost_usd=1e-9)
    result, _ = await run(params)
    assert not result.budget_exhausted and result.cost_usd is None


async def test_a_stop_chunk_ends_a_pruned_search_normally():
    def stops(prefix, sibling, limit):
        return Chunk(" end", "stop", completion_tokens=1) if prefix else words_chunk(prefix, sibling, limit)

    params = SearchParams(w=2, k=2, l=1, max_tokens=5, k_tau=1.0, k_min=0)
    result, _ = await run(params, ScriptedSampler(script=stops))
    check_invariants(result, params)
    assert result.best.finish_reason == "stop"
