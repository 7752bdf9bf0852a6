"""Long inputs (#29) on the real models: a guide cuts the prompt to its window (alike for both
sides, said in the notes, never a row past the window); the local upstream refuses a draw past its
window before any forward pass, and a long prompt's prefill stays far from a (T x T) matrix per head."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import psutil
import pytest

from w2s.providers.local import LocalSampler
from w2s.proxy.core.context import cut_left
from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest, ScoreItem
from w2s.scorers.pair import GuidePair

GUIDE_WINDOW = 300  # tokens: SmolLM2 cut down so the test reaches its window at once
STORY = ("The harbour town wakes slowly; a retired sailor climbs to the lighthouse, counts the boats "
         "and writes their names in a notebook he has kept for forty years. ")


class _Windowed:
    """The session's pool, with every model's context set to `tokens`."""

    def __init__(self, pool, tokens: int):
        self.pool, self.tokens = pool, tokens

    def get(self, name: str):
        return replace(self.pool.get(name), context_tokens=self.tokens)

    def __getattr__(self, name: str):
        return getattr(self.pool, name)  # run, executor: the session's model thread


def _pair(engine, tokens: int) -> GuidePair:
    real = engine.guides["positive-critic"]
    return GuidePair("short-window", real.cfg, _Windowed(engine.pool, tokens), real.batcher)


def _longest(session, items) -> int:
    return max(len(session.token_ids(si, it)[0]) for si in range(2) for it in items)


async def test_a_prompt_near_the_guides_window_is_cut_from_the_left_alike_for_both_sides(engine):
    prompt = Prompt.chat([{"role": "user", "content": STORY * 12 + "Review the film about him."}])
    session = _pair(engine, GUIDE_WINDOW).session(prompt, answer_tokens=18)
    assert len(session.notes) == 1 and "cut for scoring" in session.notes[0] and "both sides alike" in session.notes[0]
    cut = int(session.notes[0].split("first ")[1].split(" characters")[0])
    same = _pair(engine, 10**6).session(cut_left(prompt, cut))  # the same cut prompt, no window: same ids
    assert [e.prompt_ids for e in session._enc] == [e.prompt_ids for e in same._enc]
    items = [ScoreItem("A gentle, lovely film.", False), ScoreItem("A dull film.", True)]
    assert _longest(session, items) <= GUIDE_WINDOW
    assert await session.score(items) == pytest.approx(await same.score(items), abs=2e-3)
    short = _pair(engine, GUIDE_WINDOW).session(Prompt.chat([{"role": "user", "content": STORY}]), answer_tokens=18)
    assert short.notes == []  # a prompt that fits is scored whole, and says nothing


async def test_an_answer_outgrowing_the_budget_cuts_further_and_never_scores_past_the_window(engine):
    prompt = Prompt.chat([{"role": "user", "content": STORY * 12 + "Review the film about him."}])
    session = _pair(engine, GUIDE_WINDOW).session(prompt, answer_tokens=4)
    first = session.notes[0]
    long_answer = "A gentle film about the sea, the light and the boats. " * 6  # ~90 tokens, far past 4
    scores = await session.score([ScoreItem(long_answer, False), ScoreItem(long_answer + "Yes.", True)])
    assert len(scores) == 2 and session.notes[0] != first  # cut again, and said
    assert _longest(session, [ScoreItem(long_answer + "Yes.", True)]) <= GUIDE_WINDOW


async def test_the_local_upstream_refuses_a_draw_past_its_window_before_any_forward(engine):
    sampler: LocalSampler = engine.samplers["gemma-local"]
    short = replace(engine.pool.get(sampler.cfg.model), context_tokens=64)
    request = SampleRequest(Prompt.raw(STORY * 3), [Continuation("", 8)], seed=1)
    with pytest.raises(ContextLengthExceeded, match="64-token context"):
        sampler._generate(short, [request])


async def test_a_40k_word_request_is_refused_fast_and_exactly_counted_near_the_limit(engine):
    plan = engine.plan("w2s-test")
    t0 = time.perf_counter()
    with pytest.raises(ContextLengthExceeded, match="32768-token context"):
        await engine.check_context(plan, Prompt.chat([{"role": "user", "content": " ".join(["word"] * 40_000)}]))
    assert time.perf_counter() - t0 < 2.0
    window, max_tokens = 32768, plan.params.max_tokens
    fits = Prompt.raw(" ".join(["word"] * (window - max_tokens - 1)))  # Gemma: one token a word, plus BOS
    n = await engine.samplers["gemma-local"].count_prompt(fits, window - max_tokens)
    assert n.exact and n.tokens == window - max_tokens
    await engine.check_context(plan, fits)  # exactly at the limit: fits
    with pytest.raises(ContextLengthExceeded):
        await engine.check_context(plan, Prompt.raw(fits.text + " word"))


def _peak_rss_during(fn) -> tuple[float, int]:
    """(seconds, peak RSS growth in bytes) while `fn()` runs, sampled every 5 ms."""
    proc, peak, done = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return time.perf_counter() - t0, peak[0] - base


async def test_a_long_prompts_memory_stays_far_below_one_t_by_t_matrix_per_head(engine):
    sampler: LocalSampler = engine.samplers["gemma-local"]
    m = engine.pool.get(sampler.cfg.model)
    prompt = Prompt.raw(STORY * 200)  # ~6k tokens
    tokens = len(m.tokenizer(prompt.text)["input_ids"])
    heads = m.model.config.num_attention_heads
    t_by_t = heads * tokens * tokens * 4  # float32 scores of one layer, one row
    request = SampleRequest(prompt, [Continuation("", 4), Continuation(" He", 4)], seed=3)
    warm = SampleRequest(Prompt.raw(STORY * 12), request.continuations, seed=3)  # one-off buffers, same path
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(sampler.pool.executor, sampler._generate, m, [warm])
    seconds, grew = await loop.run_in_executor(
        sampler.pool.executor, _peak_rss_during, lambda: sampler._generate(m, [request]))
    assert tokens > 5000 and grew < t_by_t / 2, (tokens, grew, t_by_t)


async def test_a_cached_prompt_draws_what_the_plain_call_draws_on_a_full_attention_model(engine, monkeypatch):
    import torch

    from w2s.providers import prefix_cache as pc
    from w2s.proxy.runtime import prefill

    monkeypatch.setattr(prefill, "PREFILL_CHUNK", 64)  # several chunks
    m = engine.pool.get("smollm2")
    prompt = m.tokenizer(STORY * 3)["input_ids"]
    rows = [prompt + m.tokenizer(" He", add_special_tokens=False)["input_ids"],
            prompt + m.tokenizer(" The old man was", add_special_tokens=False)["input_ids"]]
    shared = pc.shared_len(rows, prompt)
    ids, mask = pc.inputs(shared, rows, pad_id=m.tokenizer.pad_token_id)
    width = max(len(r) for r in rows)
    pad = m.tokenizer.pad_token_id
    plain_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    plain_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=pad)

    def both():
        with torch.inference_mode():
            cached = m.model.generate(input_ids=ids, attention_mask=mask,
                                      cache=pc.expanded(pc.prefill(m.model, rows[0][:shared]), 2), **kw)
            plain = m.model.generate(input_ids=plain_ids, attention_mask=plain_mask, **kw)
        return cached[:, ids.shape[1]:].tolist(), plain[:, width:].tolist()

    cached, plain = await engine.pool.run(both)
    assert cached == plain
