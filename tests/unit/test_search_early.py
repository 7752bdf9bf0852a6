"""Early rejection at a token checkpoint (reject_at, reject_keep; proxy/core/search_early.py) over scripted
parts: no model, seconds. The scripted upstream writes a chunk of n tokens as n words, the last carrying the
draw's index among its siblings; the guide prefers 0s (+10) and marks every other index down by its value."""
from __future__ import annotations

import pytest

from tests.support.invariants import check_invariants
from tests.support.scripted import ScriptedSampler, ScriptedScorer, words_chunk
from w2s.proxy.api.trace import candidate_body
from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.search import SEED_STRIDE, search
from w2s.proxy.core.search_early import EARLY_SEED_OFFSET
from w2s.proxy.core.types import Chunk, Prompt, SearchParams

PROMPT = Prompt.raw("Once upon a time")


async def run(params: SearchParams, sampler=None):
    sampler = sampler or ScriptedSampler()
    return await search(PROMPT, sampler, ScriptedScorer().session(PROMPT), params), sampler


async def test_each_round_draws_to_the_checkpoint_then_only_the_best_to_the_chunk_end():
    params = SearchParams(w=2, k=3, l=4, max_tokens=8, reject_at=1, seed=7)
    result, up = await run(params)
    check_invariants(result, params)
    first, second = up.requests[0], up.requests[1]
    assert [c.max_tokens for c in first.continuations] == [1] * 6  # W*K draws, one token each
    # The two best partials (" alpha0" +10, " alpha1" -1) are drawn on for the chunk's other 3 tokens.
    assert [(c.prefix, c.max_tokens) for c in second.continuations] == [(" alpha0", 3), (" alpha1", 3)]
    assert (first.seed, second.seed) == (7 * SEED_STRIDE, 7 * SEED_STRIDE + EARLY_SEED_OFFSET)
    assert len(up.requests) == 4  # two rounds of two calls
    # Per round: 6 draws x 1 token + 2 x 3 (round 1: 2 beams x 3 draws likewise): 24 tokens, not CBS's 48.
    assert result.upstream_completion_tokens == 2 * (6 * 1 + 2 * 3)
    assert result.upstream_calls == 4 and result.rounds[0].upstream_calls == 2
    assert result.rounds[0].upstream_completion_tokens == 12
    cbs, _ = await run(SearchParams(w=2, k=3, l=4, max_tokens=8, seed=7))
    assert cbs.upstream_completion_tokens == 48
    assert result.best.text == " alpha0 beta gamma delta0 epsilon0 zeta eta theta0"
    assert result.best.completion_tokens == 8


async def test_cut_draws_stay_in_the_trace_marked_never_kept():
    params = SearchParams(w=2, k=3, l=4, max_tokens=4, reject_at=1)
    result, _ = await run(params)
    check_invariants(result, params)
    rd = result.rounds[0]
    cut = [c for c in rd.candidates if c.cut_at is not None]
    assert sorted(c.text for c in cut) == [" alpha2", " alpha3", " alpha4", " alpha5"]
    assert all(c.cut_at == 1 and not c.kept and c.score is not None and not c.finished for c in cut)
    # The cut ones scored below both survivors at the checkpoint, and the page gets the mark.
    assert max(c.score for c in cut) < -1.0
    body = candidate_body(rd.candidates.index(cut[0]), cut[0], None)
    assert body["cut_at"] == 1 and body["state"] == "pruned"
    # Scorer tokens count the checkpoint's scoring too: 6 partials of 1 word, then 2 answers of 4.
    assert rd.scorer_tokens == 6 * 1 + 2 * 4


async def test_reject_keep_sets_how_many_are_drawn_on():
    params = SearchParams(w=2, k=3, l=4, max_tokens=4, reject_at=2, reject_keep=4)
    result, up = await run(params)
    check_invariants(result, params)
    assert [c.max_tokens for c in up.requests[1].continuations] == [2, 2, 2, 2]
    assert result.upstream_completion_tokens == 6 * 2 + 4 * 2
    assert sum(c.cut_at is not None for c in result.rounds[0].candidates) == 2


async def test_identical_partials_take_one_survivor_slot():
    def same_first_word(prefix, sibling, limit):  # every draw's first token is the same word
        return words_chunk(prefix, 0 if limit == 1 else sibling, limit)

    params = SearchParams(w=2, k=2, l=3, max_tokens=3, reject_at=1)
    result, up = await run(params, ScriptedSampler(script=same_first_word))
    check_invariants(result, params)
    assert [c.prefix for c in up.requests[1].continuations] == [" alpha0"]
    assert not any(c.cut_at is not None for c in result.rounds[0].candidates)


async def test_a_lost_second_call_keeps_its_partial_answer():
    def second_fails(prefix, sibling, limit):
        return Chunk(error="down") if limit == 2 and sibling == 0 and prefix == " alpha1" else \
            words_chunk(prefix, sibling, limit)

    params = SearchParams(w=2, k=2, l=3, max_tokens=3, reject_at=1)
    result, _ = await run(params, ScriptedSampler(script=second_fails))
    check_invariants(result, params)
    texts = [c.text for c in result.rounds[0].candidates]
    assert " alpha1" in texts and " alpha0 beta gamma0" in texts
    assert result.rounds[1].candidates  # the partial is continued next round


async def test_a_stop_at_the_checkpoint_finishes_and_competes():
    def stops(prefix, sibling, limit):
        if sibling == 0 and limit == 1:
            return Chunk(" alpha0", "stop", completion_tokens=1, prompt_tokens=5)
        return words_chunk(prefix, sibling, limit)

    params = SearchParams(w=2, k=2, l=3, max_tokens=3, reject_at=1)
    result, up = await run(params, ScriptedSampler(script=stops))
    check_invariants(result, params)
    assert [c.prefix for c in up.requests[1].continuations] == [" alpha1"]  # the finished one needs no more
    assert result.best.text == " alpha0" and result.best.finish_reason == "stop"


async def test_whole_answers_and_non_exact_upstreams_draw_whole_chunks():
    params = SearchParams(w=2, k=2, l=3, max_tokens=3, reject_at=1)
    result, up = await run(params, ScriptedSampler(exact=False))
    assert len(up.requests) == 1 and all(c.max_tokens == 3 for c in up.requests[0].continuations)
    assert not any(c.cut_at is not None for rd in result.rounds for c in rd.candidates)


def test_early_rejection_options_are_validated():
    for bad in ({"reject_at": 0}, {"reject_at": 4}, {"reject_at": 5}, {"reject_at": 1, "l": None},
                {"reject_at": 1, "reject_keep": 0}):
        with pytest.raises(InvalidRequest) as e:
            SearchParams(**{"w": 2, "k": 2, "l": 4, **bad}).validate()
        assert e.value.param in ("reject_at", "reject_keep")
    SearchParams(w=2, k=2, l=4, reject_at=3, reject_keep=1).validate()


async def test_a_budget_spent_at_the_checkpoint_draws_no_further():
    # 6 draws x 1 token = 6 >= max_upstream_tokens: the partials end the search, cut by the budget.
    params = SearchParams(w=2, k=3, l=4, max_tokens=8, reject_at=1, max_upstream_tokens=6)
    result, up = await run(params)
    check_invariants(result, params)
    assert len(up.requests) == 1 and result.upstream_completion_tokens == 6
    assert result.budget_exhausted and result.best.text == " alpha0" and result.best.finish_reason == "length"
