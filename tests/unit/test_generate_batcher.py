"""The local sampler's cross-search batcher (providers/generate_batcher.py) over an injected run
function: a failing merged call, the row budget, cancelled and closed requests (a real model
cannot fail or be cancelled on demand; tests/integration/test_local_batch.py has the real ones)."""
from __future__ import annotations

import asyncio

from w2s.providers.generate_batcher import GenerateBatcher
from w2s.proxy.core.types import Chunk, Continuation, Prompt, SampleRequest


def _req(tag: str, rows: int = 1) -> SampleRequest:
    return SampleRequest(Prompt.raw(tag), [Continuation("", 2)] * rows, temperature=0.5)



async def test_a_failing_merged_call_is_retried_request_by_request():
    """Fault injection: one request that breaks generation must not fail its neighbours."""
    calls: list[list[str]] = []

    async def run(reqs):
        calls.append([r.prompt.text for r in reqs])
        await asyncio.sleep(0.01)
        if any(r.prompt.text == "bad" for r in reqs):
            raise RuntimeError("boom")
        return [[Chunk(r.prompt.text + "!", "length", 1, 1)] * len(r.continuations) for r in reqs]

    b = GenerateBatcher(run, max_rows=8)
    out = await asyncio.gather(b.submit(_req("a")), b.submit(_req("bad")), b.submit(_req("c")),
                               return_exceptions=True)
    await b.aclose()
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert out[0][0].text == "a!" and out[2][0].text == "c!"
    assert isinstance(out[1], RuntimeError)
    assert (b.stats.calls, b.stats.requests) == (2, 2)



async def test_row_budget_and_cancelled_requests():
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def run(reqs):
        calls.append([r.prompt.text for r in reqs])
        await gate.wait()
        return [[Chunk("x", "length", 1, 1)] * len(r.continuations) for r in reqs]

    b = GenerateBatcher(run, max_rows=4)
    first = asyncio.create_task(b.submit(_req("first")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    others = [asyncio.create_task(b.submit(_req(t, rows))) for t, rows in
              (("r3", 3), ("gone", 1), ("r2", 2), ("r1", 1))]
    await asyncio.sleep(0)
    others[1].cancel()  # its search went away while queued: never generated
    gate.set()
    await asyncio.gather(first, others[0], others[2], others[3])
    await b.aclose()
    # "first" ran alone; then r3 + r1 fill the 4-row budget ahead of r2, which runs next.
    assert calls == [["first"], ["r3", "r1"], ["r2"]]
    assert b.stats.batch_rows == {1: 1, 4: 1, 2: 1}



async def test_closing_cancels_every_job_instead_of_leaving_it_hanging():
    gate = asyncio.Event()

    async def run(reqs):
        await gate.wait()  # never set: the model thread is "busy" until shutdown
        return [[Chunk("x", "length", 1, 1)] for _ in reqs]

    b = GenerateBatcher(run, max_rows=1)  # one row a call: the rest wait in the queue and in `pending`
    tasks = [asyncio.create_task(b.submit(_req(t))) for t in ("a", "b", "c", "d")]
    await asyncio.sleep(0.05)
    await b.aclose()
    done, _ = await asyncio.wait(tasks, timeout=2)
    assert len(done) == 4 and all(t.cancelled() for t in tasks)
