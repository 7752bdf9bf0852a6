"""The pure search (proxy/core/search.py) over scripted parts: no model, seconds.

The same invariants the real-model tests check (tests/integration/test_search.py, tests/support/invariants.py) hold
here, plus the cases a real model cannot be made to produce on demand.
"""
from __future__ import annotations

import pytest

from tests.support.invariants import check_invariants
from tests.support.scripted import ScriptedSampler, ScriptedScorer, words_chunk
from w2s.proxy.core.errors import UpstreamError
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.search import SEED_STRIDE, committed_prefix, search
from w2s.proxy.core.types import Chunk, Prompt, ScoreItem, SearchParams

PROMPT = Prompt.raw("Once upon a time")


def one_stops(prefix: str, sibling: int, limit: int) -> Chunk:
    """Words, except that the second draw after " alpha0" stops there with " end"."""
    if prefix == " alpha0" and sibling == 1:
        return Chunk(" end", "stop", completion_tokens=1)
    return words_chunk(prefix, sibling, limit)


async def run(params: SearchParams, sampler=None, scorer=None, **kw):
    sampler = sampler or ScriptedSampler()
    scorer = scorer or ScriptedScorer()
    result = await search(PROMPT, sampler, scorer.session(PROMPT), params, **kw)
    return result, sampler, scorer


async def test_round_zero_draws_w_times_k_then_k_per_unfinished_beam():
    params = SearchParams(w=2, k=3, l=2, max_tokens=6, seed=5)
    result, up, _ = await run(params)
    check_invariants(result, params)
    first, second = up.requests[0], up.requests[1]
    assert len(first.continuations) == 6 and all(c.prefix == "" for c in first.continuations)
    assert len(second.continuations) == 6  # 2 kept beams x 3 children
    assert len({c.prefix for c in second.continuations}) == 2
    assert [r.seed for r in up.requests] == [5 * SEED_STRIDE + i for i in range(3)]
    assert len(result.rounds) == 3 and result.mode == "cbs"
    assert result.best.completion_tokens == 6 and result.best.finish_reason == "length"


async def test_whole_partial_answers_are_scored_and_the_top_w_kept():
    params = SearchParams(w=2, k=2, l=1, max_tokens=3)
    result, _, guide = await run(params)
    check_invariants(result, params)
    # Every item scored is a whole partial answer (it starts where the answer starts).
    assert all(i.text.startswith(" alpha") for i in guide.scored)
    assert result.best.text == " alpha0 beta0 gamma0"  # the guide likes 0s best
    assert committed_prefix([c.text for c in result.rounds[1].candidates if c.kept]) == " alpha0 beta"


async def test_finished_beams_stay_in_the_pool_and_compete():
    # " alpha0 end" stops in round 1; the guide likes it most, so it is kept to the end.
    def likes_end(item: ScoreItem) -> float:
        return 100.0 if item.text.endswith("end") else len(item.text)

    params = SearchParams(w=3, k=2, l=1, max_tokens=5)
    result, _, _ = await run(params, ScriptedSampler(script=one_stops), ScriptedScorer(score=likes_end))
    check_invariants(result, params)
    carried = [c for ri, rd in enumerate(result.rounds[1:], 1) for c in rd.candidates
               if c.finished and c.parent is not None and result.rounds[ri - 1].candidates[c.parent].finished]
    assert carried, "a finished beam was carried into a later round"
    assert result.best.text.endswith("end") and result.best.finish_reason == "stop"


async def test_identical_candidates_are_scored_once_and_take_one_slot():
    def same(prefix, sibling, limit):
        return Chunk(" same", "length", completion_tokens=1)
    params = SearchParams(w=2, k=3, l=1, max_tokens=2)
    result, _, guide = await run(params, ScriptedSampler(script=same))
    check_invariants(result, params)
    assert [len(rd.candidates) for rd in result.rounds] == [1, 1]  # 6 identical draws, one candidate
    assert [i.text for i in guide.scored] == [" same", " same same"]


async def test_duplicates_stay_apart_for_independent_draws():
    def same(prefix, sibling, limit):
        return Chunk(" same", "length", completion_tokens=1)
    params = SearchParams(w=3, k=1, l=None, max_tokens=1, n=3)
    result = await search(PROMPT, ScriptedSampler(script=same), None, params, mode=SearchMode.PASSTHROUGH)
    assert [a.text for a in result.answers] == [" same"] * 3


def short_or_long(prefix: str, sibling: int, limit: int) -> Chunk:
    """Draw 0 stops after one word; every other runs to the token limit."""
    if sibling == 0:
        return Chunk(" short", "stop", completion_tokens=1)
    return Chunk(" long" * limit, "length", completion_tokens=limit)


async def test_the_eos_term_is_scored_only_for_answers_that_stopped():
    params = SearchParams(w=1, k=2, l=None, max_tokens=3)
    result, _, guide = await run(params, ScriptedSampler(script=short_or_long))
    by_text = {i.text: i.finished for i in guide.scored}
    assert by_text == {" short": True, " long long long": False}  # stopped vs cut at max_tokens
    assert result.mode == "bon" and {a.finish_reason for a in result.answers} <= {"stop", "length"}
    paper = SearchParams(w=1, k=2, l=None, max_tokens=3, eos_on_length=True)
    _, _, guide = await run(paper, ScriptedSampler(script=short_or_long))
    assert all(i.finished for i in guide.scored)  # the paper's code: EOS for both


async def test_an_upstream_token_budget_stops_the_search_with_the_best_so_far():
    params = SearchParams(w=2, k=2, l=2, max_tokens=40, max_upstream_tokens=10)
    result, up, _ = await run(params)
    assert result.budget_exhausted and result.upstream_completion_tokens <= 10 + 4
    assert result.best.finish_reason == "length" and result.best.text
    # The last round's draws shared what was left of the budget.
    assert all(c.max_tokens <= 2 for r in up.requests for c in r.continuations)


async def test_an_upstream_that_cannot_continue_runs_one_round_labelled_bon_approx():
    params = SearchParams(w=2, k=2, l=2, max_tokens=6)
    result, up, _ = await run(params, ScriptedSampler(exact=False))
    assert result.mode == "bon-approx" and len(result.rounds) == 1 == len(up.requests)
    assert all(c.max_tokens == 6 for c in up.requests[0].continuations)  # whole answers, not chunks
    assert result.best.finish_reason == "length"


async def test_losing_exact_continuation_mid_search_falls_back_to_whole_answers():
    class LosesContinuation(ScriptedSampler):
        async def sample(self, request):
            out = await super().sample(request)
            if len(self.requests) > 1:
                out.exact = False  # e.g. a prefill refusal found in round 2
            return out

    params = SearchParams(w=2, k=2, l=1, max_tokens=4)
    result, _, _ = await run(params, LosesContinuation())
    assert result.mode == "bon-approx" and len(result.rounds) == 2
    assert all(c.parent is None or c.finished for c in result.rounds[1].candidates)
    assert result.rounds[1].exact is False


async def test_every_draw_failing_is_an_upstream_error_naming_the_round():
    def broken(prefix, sibling, limit):
        return Chunk(error="boom") if prefix else words_chunk(prefix, sibling, limit)

    with pytest.raises(UpstreamError, match="all 4 upstream draws failed in round 1"):
        await run(SearchParams(w=2, k=2, l=1, max_tokens=4), ScriptedSampler(script=broken))


async def test_some_failed_draws_are_counted_and_the_rest_go_on():
    def flaky(prefix, sibling, limit):
        return Chunk(error="boom") if sibling == 1 else words_chunk(prefix, sibling, limit)

    params = SearchParams(w=2, k=2, l=1, max_tokens=3)
    result, _, _ = await run(params, ScriptedSampler(script=flaky))
    assert [rd.failed_chunks for rd in result.rounds] == [1, 2, 2]  # draw 1 of each prefix fails
    assert result.best.text == " alpha0 beta0 gamma0"


async def test_a_chunk_reporting_no_tokens_still_makes_progress():
    def nothing(prefix, sibling, limit):
        return Chunk(" x", "length", completion_tokens=0)
    params = SearchParams(w=1, k=2, l=1, max_tokens=3)
    result, _, _ = await run(params, ScriptedSampler(script=nothing))
    assert len(result.rounds) == 3 and result.best.completion_tokens == 3


async def test_n_distinct_answers_best_first():
    params = SearchParams(w=1, k=2, l=1, max_tokens=2, n=3)
    result, up, _ = await run(params)
    assert len(up.requests[0].continuations) == 6  # n beams x K: n distinct answers need n beams
    scores = [a.score for a in result.answers]
    assert len({a.text for a in result.answers}) == 3 and scores == sorted(scores, reverse=True)


async def test_plain_sampling_never_runs_the_scorer():
    params = SearchParams(w=1, k=1, l=None, max_tokens=3)
    result, _, guide = await run(params)
    assert result.mode == "sample" and guide.scored == [] and result.scorer_tokens == 0


async def test_on_round_sees_every_round_and_the_kept_texts():
    seen = []
    params = SearchParams(w=2, k=2, l=1, max_tokens=3)
    result, _, _ = await run(params, on_round=lambda trace, kept: seen.append((trace.index, kept)))
    assert [i for i, _ in seen] == [0, 1, 2]
    assert sorted(seen[-1][1]) == sorted(c.text for c in result.rounds[-1].candidates if c.kept)
    assert seen[-1][1][0] == result.best.text  # best first


@pytest.mark.parametrize("w, k, l, exact, passthrough, mode", [
    (1, 1, None, True, False, "sample"), (1, 4, None, True, False, "bon"), (1, 4, None, False, False, "bon-approx"),
    (2, 2, 10, True, False, "cbs"), (2, 2, 10, False, False, "bon-approx"), (2, 2, 10, True, True, "passthrough"),
])
def test_decide_mode(w, k, l, exact, passthrough, mode):
    assert decide_mode(SearchParams(w=w, k=k, l=l), exact=exact, passthrough=passthrough) == mode
