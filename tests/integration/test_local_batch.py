"""Cross-search batching of the local sampler (providers/generate_batcher.py) on the real models.

Concurrent requests that sample alike share one generate call and get what they
would have got alone, seeded draws included. The batcher's failure and cancellation
paths (a real model cannot fail or be cancelled on demand): tests/unit/test_generate_batcher.py.
"""
from __future__ import annotations

import asyncio

from tests.support.prom import parse_metrics
from w2s.providers.generate_batcher import merge_key
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest
from w2s.proxy.server.metrics import ProxyMetrics

PROMPTS = [Prompt.raw("The film opens with"), Prompt.raw("My favourite scene is when the hero"),
           Prompt.raw("Honestly, the acting")]


def sampler(engine):
    return engine.samplers["smol-local"]


async def test_concurrent_greedy_requests_share_one_call_and_match_solo_runs(engine):
    s = sampler(engine)
    reqs = [SampleRequest(p, [Continuation("", lim), Continuation(" It", lim)], temperature=0.0)
            for p, lim in zip(PROMPTS, (3, 9, 6))]
    solo = [(await s.sample(r)).chunks for r in reqs]
    calls0, reqs0 = s.batcher.stats.calls, s.batcher.stats.requests
    merged = await asyncio.gather(*(s.sample(r) for r in reqs))
    assert s.batcher.stats.calls - calls0 == 1, "three requests queued together: one generate call"
    assert s.batcher.stats.requests - reqs0 == 3
    for r, alone, together in zip(reqs, solo, merged):
        assert len(together.chunks) == 2
        for c, a, b in zip(r.continuations, alone, together.chunks):
            # Each row keeps its own limit inside the merged call (RowLimits), and padding
            # next to longer prompts does not change a greedy draw.
            assert b.completion_tokens <= c.max_tokens
            assert (b.text, b.finish_reason, b.completion_tokens) == (a.text, a.finish_reason, a.completion_tokens)
            assert b.prompt_tokens == a.prompt_tokens


async def test_seeded_requests_merge_and_draw_what_they_draw_alone(engine):
    """Each row samples with its own seeded RNG (providers/row_sampling.py), so merging
    does not change a seeded request's draws, and settings may differ row by row."""
    s = sampler(engine)
    reqs = [SampleRequest(p, [Continuation("", 5), Continuation("", 5)], temperature=t, top_p=tp, top_k=tk, seed=7 + i)
            for i, (p, t, tp, tk) in enumerate(zip(PROMPTS, (0.9, 0.7, 1.3), (1.0, 0.9, 1.0), (None, None, 20)))]
    solo = [[c.text for c in (await s.sample(r)).chunks] for r in reqs]
    again = [[c.text for c in (await s.sample(r)).chunks] for r in reqs]
    assert again == solo, "same seed, same draws"
    calls0 = s.batcher.stats.calls
    together = await asyncio.gather(*(s.sample(r) for r in reqs))
    assert s.batcher.stats.calls - calls0 == 1
    assert [[c.text for c in t.chunks] for t in together] == solo
    assert any(a != b for a, b in solo), "the two rows of one request draw differently"


async def test_only_requests_with_the_same_stop_strings_merge(engine):
    s = sampler(engine)
    a = SampleRequest(PROMPTS[0], [Continuation("", 3)], temperature=0.0)
    b = SampleRequest(PROMPTS[1], [Continuation("", 3)], temperature=0.7)
    c = SampleRequest(PROMPTS[2], [Continuation("", 3)], temperature=0.0, stop=(".",))
    assert merge_key(a) == merge_key(b) != merge_key(c)
    calls0 = s.batcher.stats.calls
    out = await asyncio.gather(s.sample(a), s.sample(b), s.sample(c))
    assert s.batcher.stats.calls - calls0 == 2
    assert all(len(o.chunks) == 1 and o.chunks[0].completion_tokens <= 3 for o in out)


async def test_concurrent_searches_merge_generate_calls_and_metrics_show_it(engine):
    s = sampler(engine)
    st = s.batcher.stats
    calls0, reqs0 = st.calls, st.requests
    plan = engine.plan("smol-test")
    results = await asyncio.gather(*(engine.run(plan, p) for p in PROMPTS))
    assert all(r.answers and r.answers[0].text for r in results)
    calls, served = st.calls - calls0, st.requests - reqs0
    assert served == sum(len(r.rounds) for r in results), "one sample request per search round"
    assert calls < served, f"{served} round requests should share calls, got {calls}"
    m = ProxyMetrics()
    m.watch(type("Adm", (), {"running": 0, "waiting": 0})(), lambda: engine)
    got = parse_metrics(m.render())
    assert got['w2s_local_generate_calls_total{upstream="smol-local"}'] == st.calls
    assert got['w2s_local_generate_requests_total{upstream="smol-local"}'] == st.requests








