"""A mixture guide without weights: its config, the weights a request may set (a 400 naming the key),
the sides its parts share, and each part's score in the trace (scripted parts).

The real scoring (each part exactly as its pair, one forward pass a round) is tests/integration/test_mixture.py.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tests.support.scripted import ScriptedSampler
from w2s.proxy.api.trace import round_body
from w2s.proxy.core.config import GuideMixtureConfig
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.errors import ConfigError, InvalidRequest
from w2s.proxy.core.guide_weights import resolve
from w2s.proxy.core.limits import Limits, RouteLimits
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Prompt, ScoreItem, SearchParams
from w2s.scorers.mixture import union_sides

PARTS = [{"guide": "warm", "weight": 1.0}, {"guide": "plain", "weight": 0.5}]


def config(parts=None, server=None, route_limits=None):
    """Models "m", "m-warm", "m-plain" (never loaded), pairs warm and plain sharing the untuned side, mixture mix."""
    models = {"m": {"source": "/nonexistent"}, "m-warm": {"source": "/nonexistent", "adapter": "/a"},
              "m-plain": {"source": "/nonexistent", "adapter": "/b"}}
    guides = {n: {"tuned": {"model": f"m-{n}"}, "untuned": {"model": "m"}} for n in ("warm", "plain")}
    guides["mix"] = {"kind": "mixture", "parts": PARTS if parts is None else parts}
    route = {"upstream": "up", "guide": "mix", "limits": route_limits or {}}
    return parse_config({"models": models, "upstreams": {"up": {"provider": "local", "model": "m"}},
                         "guides": guides, "routes": {"r": route, "pair": {**route, "guide": "warm"}},
                         "server": {"limits": server or {}}}, "test")


def test_a_mixture_names_its_pairs_and_their_models():
    mix = config().guides["mix"]
    assert isinstance(mix, GuideMixtureConfig)
    assert mix.weights == {"warm": 1.0, "plain": 0.5}
    assert set(mix.pairs) == {"warm", "plain"}
    assert mix.model_names() == {"m", "m-warm", "m-plain"}


@pytest.mark.parametrize("parts, server, want", [
    ([{"guide": "nope"}], None, "guides.mix.parts.0.guide: 'nope' is not in guides:"),
    ([{"guide": "warm"}, {"guide": "mix"}], None, "guides.mix.parts.1.guide: 'mix' is a mixture"),
    ([{"guide": "warm"}, {"guide": "warm"}], None, "guides.mix.parts.1.guide: 'warm' is named twice"),
    ([{"guide": "warm", "weight": -11}], None, "guides.mix.parts.0.weight: |-11"),
    ([{"guide": "warm", "weight": 3}], {"max_guide_weight": 2}, "guides.mix.parts.0.weight: |3"),
    (PARTS, {"max_guide_parts": 1}, "guides.mix.parts: 2 parts is over the limit server.limits.max_guide_parts = 1"),
    ([], None, "guides.mix.parts"),
])
def test_bad_mixtures_name_the_place(parts, server, want):
    with pytest.raises(ConfigError) as e:
        config(parts, server)
    assert str(e.value).startswith(want)


def test_a_negative_weight_in_config_steers_away():
    assert config([{"guide": "warm", "weight": -1.0}]).guides["mix"].weights == {"warm": -1.0}


def _resolve(asked, limits=Limits(), route=RouteLimits(), guide="mix"):
    return resolve(asked, {"warm": 1.0, "plain": 0.5}, guide, limits, route, "r")


def test_request_weights_replace_the_named_parts_only():
    assert _resolve({"plain": 1.5}) == {"warm": 1.0, "plain": 1.5}
    assert _resolve({"warm": -10, "plain": 0}) == {"warm": -10.0, "plain": 0.0}
    assert _resolve({}) == {"warm": 1.0, "plain": 0.5}


@pytest.mark.parametrize("asked, param, words", [
    ({"sentiment": 1.0}, "w2s.guide_weights.sentiment", "not a part of guide 'mix' (its parts: warm, plain)"),
    ({"plain": math.inf}, "w2s.guide_weights.plain", "must be a finite number"),
    ({"plain": math.nan}, "w2s.guide_weights.plain", "must be a finite number"),
    ({"plain": "1"}, "w2s.guide_weights.plain", "must be a finite number"),
    ({"plain": True}, "w2s.guide_weights.plain", "must be a finite number"),
    ({"plain": 10.5}, "w2s.guide_weights.plain", "over the limit server.limits.max_guide_weight = 10.0"),
    ({"plain": -10.5}, "w2s.guide_weights.plain", "over the limit server.limits.max_guide_weight"),
    ([1.0], "w2s.guide_weights", "must be an object"),
])
def test_bad_request_weights_are_a_400_naming_the_key(asked, param, words):
    with pytest.raises(InvalidRequest) as e:
        _resolve(asked)
    assert e.value.param == param and words in str(e.value)


def test_a_routes_own_limits_win_and_are_named():
    with pytest.raises(InvalidRequest, match=r"routes\.r\.limits\.max_guide_weight = 2"):
        _resolve({"plain": 3}, route=RouteLimits(max_guide_weight=2))
    with pytest.raises(InvalidRequest, match=r"routes\.r\.limits\.max_guide_parts = 1"):
        _resolve({}, route=RouteLimits(max_guide_parts=1))
    assert _resolve({"plain": 20}, Limits(max_guide_weight=50)) == {"warm": 1.0, "plain": 20.0}


def test_weights_for_a_route_without_a_mixture_are_a_400():
    with pytest.raises(InvalidRequest, match="has no mixture guide"):
        resolve({"warm": 1}, {}, "warm", Limits(), RouteLimits(), "pair")


def test_engine_plan_carries_the_checked_weights():
    from w2s.proxy.engine import Engine

    engine = Engine(config(), samplers={"up": ScriptedSampler("up")},
                    guides={"mix": SimpleNamespace(model_names=set()), "warm": SimpleNamespace(model_names=set())})
    assert engine.plan("r", {"w": 2, "guide_weights": {"plain": 2}}).guide_weights == {"warm": 1.0, "plain": 2.0}
    assert engine.plan("r", {"w": 2}).guide_weights is None  # the config's
    with pytest.raises(InvalidRequest, match="w2s.guide_weights.x"):
        engine.plan("r", {"guide_weights": {"x": 1}})
    with pytest.raises(InvalidRequest, match="guide 'warm' is a pair"):
        engine.plan("pair", {"guide_weights": {"warm": 1}})


def _side(model, template=None, system=None):
    return SimpleNamespace(cfg=SimpleNamespace(model=model, template=template, system=system))


def test_parts_share_a_side_only_when_it_scores_the_same_rows():
    base, other_system = _side("m"), _side("m", system="be terse")
    pairs = [SimpleNamespace(sides=[_side("m-warm"), base]), SimpleNamespace(sides=[_side("m-plain"), _side("m")]),
             SimpleNamespace(sides=[_side("m"), other_system])]
    sides, index = union_sides(pairs)
    assert index == [(0, 1), (2, 1), (1, 3)]  # the base's rows once; a system prompt makes another side
    assert len(sides) == 4


class _MixSession:
    """Scores like a mixture (2 * a + b, where a = count of "0", b = count of "1") and keeps the parts."""

    tokens_computed = 0

    def __init__(self):
        self.parts = {}

    async def score(self, items):
        out = []
        for it in items:
            p = {"a": float(it.text.count("0")), "b": float(it.text.count("1"))}
            self.parts[(it.text, it.finished)] = p
            out.append(2 * p["a"] + p["b"])
        return out

    def parts_of(self, item: ScoreItem):
        return self.parts.get((item.text, item.finished))

    def close(self):
        pass


async def test_the_trace_shows_each_parts_score_per_candidate():
    params = SearchParams(w=2, k=2, l=1, max_tokens=3)
    result = await search(Prompt.raw("x"), ScriptedSampler("up"), _MixSession(), params)
    bodies = [round_body(r, result.rounds[i - 1] if i else None) for i, r in enumerate(result.rounds)]
    cands = [c for b in bodies for c in b["candidates"]]
    assert cands and all(set(c["parts"]) == {"a", "b"} for c in cands)
    assert all(c["score"] == pytest.approx(2 * c["parts"]["a"] + c["parts"]["b"]) for c in cands)


def test_the_fronts_shares_and_who_beats_both_pairs():
    from bench.lib.front import beats_both, distinct_n, share, shares

    assert distinct_n("the cat and the cat and the cat") == pytest.approx(3 / 7)
    assert math.isnan(distinct_n("one"))
    assert share(7.5, plain=9.0, single=6.0) == pytest.approx(0.5)  # lower-is-better judges come out the same way
    assert math.isnan(share(1.0, 2.0, 2.0))
    got = shares({"tb": 0.3, "dc": 8.0}, {"tb": 0.1, "dc": 9.0}, {"tb": 0.5, "dc": 7.0})
    assert got == pytest.approx({"tb": 0.5, "dc": 0.5})
    ends = [{"tb": 1.0, "dc": 0.1}, {"tb": -0.2, "dc": 1.0}]
    assert beats_both({"tb": 0.6, "dc": 0.6}, ends) and not beats_both({"tb": 0.9, "dc": 0.1}, ends)
