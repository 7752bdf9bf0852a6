"""Parts of the scorer without weights: the dtype `auto` picks, and the row batcher's shutdown."""
from __future__ import annotations


def test_dtype_auto_keeps_guides_in_float32_on_accelerators():
    """A guide score is a difference of two log-prob sums: bf16 moves it by ~1 nat
    (bench/results/scorer/scorer.md), so `auto` only picks bf16 for upstream-only models."""
    import torch

    from w2s.proxy.runtime.loading import pick_dtype

    cuda = torch.device("cuda")  # only its type is read: no GPU needed
    assert pick_dtype("auto", cuda, guide=True) == torch.float32
    assert pick_dtype("auto", cuda, guide=False) == torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu"), guide=False) == torch.float32
    assert pick_dtype("bfloat16", cuda, guide=True) == torch.bfloat16  # an explicit choice wins



async def test_closing_the_scorer_batcher_cancels_waiting_searches():
    """Shutdown while a forward pass is stuck: every search waiting on the batcher is
    cancelled rather than left hanging (injected: a model thread that never finishes)."""
    import asyncio
    from types import SimpleNamespace

    from w2s.proxy.core.config import ScorerConfig
    from w2s.scorers.batcher import RowBatcher

    class StuckPool:
        async def run(self, *args):
            await asyncio.Event().wait()

    b = RowBatcher(StuckPool(), ScorerConfig())
    model = SimpleNamespace(name="m", model=None, weights_id=1, tokenizer=SimpleNamespace(pad_token_id=0))
    rows = [SimpleNamespace(reuse=0, new_tokens=1)]
    tasks = [asyncio.create_task(b.submit(model, rows)) for _ in range(3)]
    await asyncio.sleep(0.05)
    await b.aclose()
    done, _ = await asyncio.wait(tasks, timeout=2)
    assert len(done) == 3 and all(t.cancelled() for t in tasks)
