"""CBS semantics on the real models: Gemma 3 270M upstream, SmolLM2 guide pair.

Every run is checked against the algorithm's invariants round by round, and
its scores against a fresh full recompute of each whole partial answer.
"""
from __future__ import annotations

import pytest

from tests.support.invariants import check_invariants
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest, ScoreItem, SearchParams

PROMPT = Prompt.raw("I watched this movie last night and")


async def rescore(engine, guide, prompt, rd, full=True):
    """Fresh, non-incremental scores of a round's candidates."""
    pair = engine.guides[guide]
    fresh = type(pair)("fresh", pair.cfg, pair.pool, pair.batcher, incremental=not full)
    fresh.bind()
    items = [ScoreItem(c.text, c.finished and c.finish_reason == "stop") for c in rd.candidates]
    return await fresh.session(prompt).score(items)


async def test_cbs_semantics_cross_vocabulary(engine):
    sampler = engine.samplers["gemma-local"]
    pair = engine.guides["positive-critic"]
    up_vocab = len(engine.pool.get("gemma3-270m").tokenizer)
    guide_vocab = len(engine.pool.get("smollm2").tokenizer)
    assert up_vocab > 5 * guide_vocab  # 262k vs 49k: only text crosses over

    params = SearchParams(w=2, k=3, l=4, max_tokens=20, seed=11, stop=(".",))
    session = pair.session(PROMPT)
    result = await search(PROMPT, sampler, session, params)
    check_invariants(result, params)
    assert result.mode == "cbs"
    assert len(result.rounds[0].candidates) == 6  # W*K draws from the bare prompt
    assert len(result.rounds) >= 2
    # Scores are of the whole partial answer: a full recompute agrees, every round.
    for rd in result.rounds:
        again = await rescore(engine, "positive-critic", PROMPT, rd)
        assert [c.score for c in rd.candidates] == pytest.approx(again, abs=3e-3)
    assert result.scorer_tokens == session.tokens_computed
    assert result.upstream_completion_tokens == sum(r.upstream_completion_tokens for r in result.rounds)


async def test_finished_candidates_stay_and_compete(engine):
    """With '.' as a stop string answers finish early; a finished beam is carried and can win."""
    sampler = engine.samplers["gemma-local"]
    pair = engine.guides["positive-critic"]
    params = SearchParams(w=3, k=2, l=3, max_tokens=18, seed=0, stop=(".",))
    result = await search(PROMPT, sampler, pair.session(PROMPT), params)
    check_invariants(result, params)
    carried = [
        c for ri, rd in enumerate(result.rounds[1:], 1) for c in rd.candidates
        if c.finished and c.parent is not None
        and result.rounds[ri - 1].candidates[c.parent].finished
    ]
    assert carried, "some finished beam was carried into a later round"
    assert any(c.finish_reason == "stop" for rd in result.rounds for c in rd.candidates)


async def test_stops_at_max_tokens(engine):
    sampler = engine.samplers["gemma-local"]
    params = SearchParams(w=2, k=2, l=5, max_tokens=12, seed=2)
    result = await search(PROMPT, sampler, engine.guides["positive-critic"].session(PROMPT), params)
    check_invariants(result, params)
    assert len(result.rounds) == 3  # 5 + 5 + 2 tokens
    assert result.best.completion_tokens <= 12
    assert result.best.finish_reason in ("length", "stop")


async def test_best_of_n_is_one_round(engine):
    sampler = engine.samplers["gemma-local"]
    params = SearchParams(w=1, k=4, l=None, max_tokens=12, seed=3)
    result = await search(PROMPT, sampler, engine.guides["positive-critic"].session(PROMPT), params)
    check_invariants(result, params)
    assert result.mode == "bon"
    (rd,) = result.rounds
    assert len(rd.candidates) == 4 and all(c.finished for c in rd.candidates)
    assert result.best.score == max(c.score for c in rd.candidates)


async def test_plain_sampling_is_the_upstream_sample(engine):
    sampler = engine.samplers["gemma-local"]
    params = SearchParams(w=1, k=1, l=None, max_tokens=12, seed=4)
    session = engine.guides["positive-critic"].session(PROMPT)
    result = await search(PROMPT, sampler, session, params)
    assert result.mode == "sample" and result.scorer_tokens == 0 and len(result.rounds) == 1
    direct = await sampler.sample(SampleRequest(PROMPT, [Continuation("", 12)], seed=4 * 1_000_003))
    assert result.best.text == direct.chunks[0].text


async def test_identical_candidates_scored_once_and_not_crowding(engine):
    """Greedy decoding makes all K children identical: they take one slot."""
    sampler = engine.samplers["gemma-local"]
    session = engine.guides["positive-critic"].session(PROMPT)
    params = SearchParams(w=2, k=3, l=4, max_tokens=8, temperature=0.0)
    result = await search(PROMPT, sampler, session, params)
    check_invariants(result, params)
    assert len(result.rounds[0].candidates) == 1  # six identical draws, one candidate


async def test_n_distinct_answers(engine):
    sampler = engine.samplers["gemma-local"]
    params = SearchParams(w=2, k=2, l=6, max_tokens=12, seed=8, n=3)
    result = await search(PROMPT, sampler, engine.guides["positive-critic"].session(PROMPT), params)
    check_invariants(result, params)
    assert len(result.answers) == 3
    assert len({a.text for a in result.answers}) == 3
    scores = [a.score for a in result.answers]
    assert scores == sorted(scores, reverse=True)


async def test_upstream_token_budget_stops_cleanly(engine):
    sampler = engine.samplers["gemma-local"]
    params = SearchParams(w=2, k=2, l=4, max_tokens=40, seed=9, max_upstream_tokens=20)
    result = await search(PROMPT, sampler, engine.guides["positive-critic"].session(PROMPT), params)
    assert result.budget_exhausted
    assert result.upstream_completion_tokens <= 20 + 4  # at most one round past the line
    assert result.best.finish_reason == "length" and result.best.text


async def test_engine_route_and_passthrough(engine):
    result = await engine.run(engine.plan("w2s-test", {"seed": 1}), Prompt.chat([{"role": "user", "content": "The film was"}]))
    assert result.mode == "cbs" and result.best.text
    plain = await engine.run(engine.plan("passthrough", {"seed": 1, "n": 2}), PROMPT)
    assert plain.mode == "passthrough" and plain.scorer_tokens == 0 and len(plain.answers) == 2


async def test_trailing_assistant_message_is_continued(engine):
    """A prefill (Anthropic style / continue_final_message) is continued, not repeated."""
    sampler = engine.samplers["gemma-local"]
    msgs = [{"role": "user", "content": "I watched this movie last night and"}, {"role": "assistant", "content": " it was"}]
    prompt = Prompt.chat(msgs)
    assert prompt.prefill == " it was" and len(prompt.messages) == 1
    via_prefill = await sampler.sample(SampleRequest(prompt, [Continuation("", 6)], seed=7))
    via_prefix = await sampler.sample(SampleRequest(Prompt.chat(msgs[:1]), [Continuation(" it was", 6)], seed=7))
    assert via_prefill.chunks[0].text == via_prefix.chunks[0].text
    result = await engine.run(engine.plan("w2s-test", {"seed": 3, "max_tokens": 8, "l": 4}), prompt)
    assert not result.best.text.startswith(" it was")
    # The guide scores only what follows the prefill.
    again = await rescore(engine, "positive-critic", prompt, result.rounds[-1])
    assert [c.score for c in result.rounds[-1].candidates] == pytest.approx(again, abs=3e-3)


async def test_stop_string_is_cut_and_named(engine):
    sampler = engine.samplers["gemma-local"]
    out = await sampler.sample(SampleRequest(PROMPT, [Continuation("", 12)] * 3, stop=(" ", "."), seed=1))
    for chunk in out.chunks:
        assert " " not in chunk.text and "." not in chunk.text
        if chunk.finish_reason == "stop" and chunk.stop_sequence is not None:
            assert chunk.stop_sequence in (" ", ".")
    assert any(c.stop_sequence == " " for c in out.chunks)  # the answer starts with a space: stops at once


async def test_early_rejection_cuts_draws_at_the_checkpoint(engine):
    """reject_at on the real models: the draws cut one token into a chunk are scored as whole partial answers
    (a fresh recompute agrees), never kept, and the search writes what the bound says it may."""
    sampler = engine.samplers["gemma-local"]
    pair = engine.guides["positive-critic"]
    params = SearchParams(w=2, k=3, l=4, max_tokens=12, seed=5, reject_at=1)
    result = await search(PROMPT, sampler, pair.session(PROMPT), params)
    check_invariants(result, params)
    assert result.mode == "cbs" and result.upstream_calls == 2 * len(result.rounds)
    for rd in result.rounds:
        cut = [c for c in rd.candidates if c.cut_at is not None]
        assert cut and all(c.cut_at == 1 and not c.kept for c in cut)
        assert rd.upstream_completion_tokens <= 6 * 1 + 2 * 3  # reject_keep defaults to w: 2 drawn on
        again = await rescore(engine, "positive-critic", PROMPT, rd)
        assert [c.score for c in rd.candidates] == pytest.approx(again, abs=3e-3)
    cbs = await search(PROMPT, sampler, pair.session(PROMPT), SearchParams(w=2, k=3, l=4, max_tokens=12, seed=5))
    assert result.upstream_completion_tokens < 0.6 * cbs.upstream_completion_tokens
