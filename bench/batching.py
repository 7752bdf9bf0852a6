"""Scorer micro-batching: forward-pass sizes with 8 concurrent guided requests against 1.

One process, one event loop, one `Engine` over the embedded config.yaml behind
a real aiohttp server on loopback; the real openai SDK (`AsyncOpenAI`,
max_retries=0) sends guided requests to route `w2s-default` with small search
settings (w=k=2, l=8, max_tokens 24; --quick: 16).

Each phase sends the same 8 requests (same prompts, same seeds, so the same
upstream work and the same scorer rows): by 1 client one after the other, or
by 8 concurrent clients at once. Phases alternate 1,8,8,1 (--quick: 1,8) so
the machine's noise hits both. Per phase it reads the deltas of
`engine.batcher.stats` (cross-checked against GET /metrics): forward passes,
rows per pass, real and padded tokens, plus wall time and throughput.

It also wraps `engine.pool.run` (the one model thread every forward pass and
every upstream generate call goes through) to see each scorer batch's row
shapes and the time spent inside the forward pass itself, so that padding can
be split into the fed part (B x max new tokens) and the attended part
(B x (max cached + max new)), and queuing for the model thread can be told
apart from compute.

    python -m bench.batching            # about 7-8 min on 2 shared cores
    python -m bench.batching --quick    # about 3 min

Writes bench/results/batching/batching.md (batching_quick.md with --quick, or --out).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.lib.machine import machine, set_threads, threads_arg, today
from bench.lib.prompts import PROMPTS
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.stats import mean, per_item, quantile
from bench.lib.tables import table

ROUTE = "w2s-default"
SEED = 4321


# --- instrumentation of the model thread -------------------------------------------


@dataclass
class ModelThread:
    """What went through `engine.pool.run`: scorer batches (row shapes) and generate calls."""

    batches: list[list[tuple[int, int]]] = field(default_factory=list)  # per pass: [(reuse, new)] per row
    forward_s: float = 0.0  # inside forward_rows, in the model thread
    forward_wait_s: float = 0.0  # submitted to the model thread -> started
    generate_calls: int = 0
    generate_s: float = 0.0
    other_s: float = 0.0

    def snapshot(self) -> "ModelThread":
        return ModelThread(list(self.batches), self.forward_s, self.forward_wait_s, self.generate_calls,
                           self.generate_s, self.other_s)

    def since(self, before: "ModelThread") -> "ModelThread":
        return ModelThread(self.batches[len(before.batches):], self.forward_s - before.forward_s,
                           self.forward_wait_s - before.forward_wait_s,
                           self.generate_calls - before.generate_calls, self.generate_s - before.generate_s,
                           self.other_s - before.other_s)


def instrument(engine) -> ModelThread:
    from w2s.scorers.rows import forward_rows

    mt = ModelThread()
    pool = engine.pool
    orig = pool.run

    async def run(fn, *args):
        t_submit = time.perf_counter()
        started: list[float] = []
        # The batcher times its passes itself: pool.run(_timed, forward_rows, model, rows, pad).
        inner, inner_args = (args[0], args[1:]) if args and args[0] is forward_rows else (fn, args)

        def timed(*a):
            t = time.perf_counter()
            started.append(t)
            try:
                return fn(*a)
            finally:
                dt = time.perf_counter() - t
                if inner is forward_rows:
                    mt.forward_s += dt
                elif getattr(fn, "__name__", "") == "_generate":
                    mt.generate_calls += 1
                    mt.generate_s += dt
                else:
                    mt.other_s += dt

        out = await orig(timed, *args)
        if inner is forward_rows:
            mt.batches.append([(r.reuse, r.new_tokens) for r in inner_args[1]])
            if started:
                mt.forward_wait_s += started[0] - t_submit
        return out

    pool.run = run  # the batcher and the local sampler look it up per call
    return mt


# --- phases --------------------------------------------------------------------------


@dataclass
class Phase:
    clients: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # engine.batcher.stats deltas
    batch_rows: Counter = field(default_factory=Counter)
    metrics: dict = field(default_factory=dict)  # /metrics deltas
    thread: ModelThread = field(default_factory=ModelThread)
    texts: list[str] = field(default_factory=list)
    rounds: int = 0
    upstream_calls: int = 0
    cpu: float = 0.0  # this process's CPU seconds (all threads): less than wall x busy = other work took the cores


STAT_KEYS = ("batches", "rows", "tokens", "padded_tokens", "seconds")
METRIC_KEYS = {"batches": "w2s_scorer_batches_total", "rows": "w2s_scorer_rows_total",
               "tokens": "w2s_scorer_batch_tokens_total", "padded_tokens": "w2s_scorer_padded_tokens_total",
               "seconds": "w2s_scorer_busy_seconds_total"}


async def scrape(http, base: str) -> dict[str, float]:
    from bench.lib.testkit import parse_metrics

    async with http.get(f"{base}/metrics") as r:
        r.raise_for_status()
        return parse_metrics(await r.text())


async def run_phase(engine, client, http, base: str, mt: ModelThread, clients: int, n: int, search: dict) -> Phase:
    ph = Phase(clients)
    st = engine.scorer_stats
    s0 = {k: getattr(st, k) for k in STAT_KEYS}
    c0 = Counter(st.batch_rows)
    m0 = await scrape(http, base)
    t0 = mt.snapshot()

    async def one(i: int) -> None:
        t = time.perf_counter()
        raw = await client.completions.with_raw_response.create(
            model=ROUTE, prompt=PROMPTS[i % len(PROMPTS)], max_tokens=search["max_tokens"], seed=SEED + i,
            extra_body={"w2s": {k: v for k, v in search.items() if k != "max_tokens"}})
        r = raw.parse()
        ph.latencies.append(time.perf_counter() - t)
        ph.texts.append((i, r.choices[0].text))
        ph.rounds += int(raw.headers.get("x-w2s-rounds", 0))
        ph.upstream_calls += int(raw.headers.get("x-w2s-upstream-calls", 0))

    tw, cpu0 = time.perf_counter(), time.process_time()
    if clients == 1:
        for i in range(n):
            await one(i)
    else:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                await one(queue.pop(0))

        await asyncio.gather(*(worker() for _ in range(clients)))
    ph.wall = time.perf_counter() - tw
    ph.cpu = time.process_time() - cpu0
    ph.texts = [t for _, t in sorted(ph.texts)]
    ph.stats = {k: getattr(st, k) - s0[k] for k in STAT_KEYS}
    ph.batch_rows = Counter(st.batch_rows) - c0
    m1 = await scrape(http, base)
    ph.metrics = {k: m1.get(name, 0.0) - m0.get(name, 0.0) for k, name in METRIC_KEYS.items()}
    ph.thread = mt.since(t0)
    return ph


def merge(phases: list[Phase]) -> Phase:
    out = Phase(phases[0].clients)
    for p in phases:
        out.wall += p.wall
        out.cpu += p.cpu
        out.latencies += p.latencies
        for k in STAT_KEYS:
            out.stats[k] = out.stats.get(k, 0) + p.stats[k]
            out.metrics[k] = out.metrics.get(k, 0) + p.metrics[k]
        out.batch_rows += p.batch_rows
        t = out.thread
        t.batches += p.thread.batches
        t.forward_s += p.thread.forward_s
        t.forward_wait_s += p.thread.forward_wait_s
        t.generate_calls += p.thread.generate_calls
        t.generate_s += p.thread.generate_s
        t.other_s += p.thread.other_s
        out.rounds += p.rounds
        out.upstream_calls += p.upstream_calls
    return out


# --- the run -------------------------------------------------------------------------


async def run(args) -> tuple[list[Phase], str, dict]:
    import aiohttp

    set_threads(args.threads)

    from openai import AsyncOpenAI

    from w2s.proxy.core.config_load import load_config
    from w2s.proxy.engine import Engine
    from w2s.proxy.server.app import create_app, start

    search = {"w": 2, "k": 2, "l": 8, "max_tokens": 16 if args.quick else 24}
    order = [1, args.clients] if args.quick else [1, args.clients, args.clients, 1]

    t0 = time.perf_counter()
    cfg = load_config(ROOT / "config.yaml")
    engine = Engine(cfg)
    await engine.start()
    print(f"models loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    mt = instrument(engine)
    app = create_app(cfg, engine)
    runner, port = await start(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    phases: list[Phase] = []
    try:
        async with AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=1200) as client, \
                aiohttp.ClientSession() as http:
            # Warm-up: one short guided request (first-call paths, the SDK's connection).
            await client.completions.create(model=ROUTE, prompt="Warm-up:", max_tokens=2, seed=1,
                                            extra_body={"w2s": {"w": 2, "k": 2, "l": 1}})
            for c in order:
                ph = await run_phase(engine, client, http, base, mt, c, args.requests, search)
                phases.append(ph)
                print(f"{c} client(s): {ph.wall:.0f} s, {ph.stats['batches']} passes, "
                      f"{ph.stats['rows']} rows", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()
        await engine.aclose()
    return phases, machine(note="shared with other work (timings noisy)"), search


def dist(c: Counter) -> str:
    return ", ".join(f"{rows}×{n}" for rows, n in sorted(c.items()))


def efficiencies(batches: list[list[tuple[int, int]]]) -> tuple[float, float]:
    """(fed, attended): real / padded for the fed tokens (B x max new) and the attention span (B x (P + N))."""
    fed = fed_pad = att = att_pad = 0
    for b in batches:
        P, N = max(r for r, _ in b), max(n for _, n in b)
        fed += sum(n for _, n in b)
        fed_pad += len(b) * N
        att += sum(r + n for r, n in b)
        att_pad += len(b) * (P + N)
    return (fed / fed_pad if fed_pad else math.nan), (att / att_pad if att_pad else math.nan)


def batch_row(c: int, m) -> list[str]:
    """Forward passes of one client count: passes, rows per pass, tokens, padding."""
    s, n = m.stats, len(m.latencies)
    fed, att = efficiencies(m.thread.batches)
    return [str(c), str(n), str(s["batches"]), f"{per_item(s['batches'], n):.2f}", str(s["rows"]),
            f"**{s['rows'] / s['batches']:.2f}**" if s["batches"] else "—", dist(m.batch_rows),
            f"{s['tokens']:,}", f"{s['padded_tokens']:,}",
            f"{s['tokens'] / s['padded_tokens']:.3f}" if s["padded_tokens"] else "—", f"{fed:.3f}", f"{att:.3f}"]


def time_row(c: int, m) -> list[str]:
    """Time of one client count: wall, latencies, where the model thread spent it, CPU."""
    s, th, n = m.stats, m.thread, len(m.latencies)
    return [str(c), str(n), f"{m.wall:.1f}", f"{n / m.wall * 60:.2f}", f"{mean(m.latencies):.1f}",
            f"{quantile(m.latencies, 0.5):.1f}", f"{max(m.latencies):.1f}", f"{th.forward_s:.1f}",
            f"{th.forward_s / s['batches'] * 1000:.0f}" if s["batches"] else "—",
            f"{th.forward_s / s['rows'] * 1000:.0f}" if s["rows"] else "—",
            f"{th.forward_wait_s:.1f}", f"{s['seconds']:.1f}", f"{th.generate_calls}", f"{th.generate_s:.1f}",
            f"{(th.forward_s + th.generate_s + th.other_s) / m.wall:.2f}", f"{m.cpu:.1f}", f"{m.cpu / m.wall:.2f}"]


def checks(by: dict, merged: dict) -> list[str]:
    """/metrics against the batcher's own counters, and answers identical across phases."""
    out = []
    for c, m in merged.items():
        s = m.stats
        same_metrics = all(abs(m.metrics[k] - s[k]) < 1e-6 * max(1, abs(s[k])) for k in STAT_KEYS)
        out.append(f"{c} client(s): /metrics deltas {'match' if same_metrics else 'DIFFER from'} "
                   f"engine.batcher.stats; {m.rounds} rounds, {m.upstream_calls} upstream calls "
                   f"({m.thread.generate_calls} generate calls seen in the model thread)")
    if 1 in by:
        base_texts = by[1][0].texts
        for c, ps in by.items():
            for j, p in enumerate(ps):
                if c == 1 and j == 0:
                    continue
                same = sum(a == b for a, b in zip(base_texts, p.texts))
                out.append(f"answers of the {c}-client phase #{j + 1} identical to the first 1-client "
                           f"phase's: {same}/{len(base_texts)}")
    return out


def ratio_line(merged: dict, clients: int) -> str:
    if 1 not in merged or clients not in merged:
        return ""
    a, b = merged[1], merged[clients]
    return (f"\n{clients} clients against 1: {b.stats['batches'] / a.stats['batches']:.2f}x the forward "
            f"passes, {(b.stats['rows'] / b.stats['batches']) / (a.stats['rows'] / a.stats['batches']):.2f}x "
            f"the rows per pass, {a.wall / b.wall:.2f}x the throughput "
            f"({b.thread.forward_s / a.thread.forward_s:.2f}x the forward-pass compute, "
            f"{b.thread.generate_s / a.thread.generate_s:.2f}x the generate time).\n")


def report(phases: list[Phase], machine: str, search: dict, args, elapsed: float) -> str:
    by = {}
    for p in phases:
        by.setdefault(p.clients, []).append(p)
    merged = {c: merge(ps) for c, ps in by.items()}
    return page(args, search, machine, elapsed, ",".join(str(p.clients) for p in phases),
                [batch_row(c, m) for c, m in merged.items()], ratio_line(merged, args.clients),
                [time_row(c, m) for c, m in merged.items()], checks(by, merged))


def page(args, search: dict, machine: str, elapsed: float, order: str, rows_b, ratio, rows_t, checks) -> str:
    cmd = "python -m bench.batching" + (" --quick" if args.quick else "")
    return f"""# Scorer batching: {args.clients} concurrent guided requests against 1

{today()}, `{cmd}`, {elapsed / 60:.1f} min.
Machine: {machine}.

Route `w2s-default` of the embedded config.yaml (Gemma 3 270M upstream, SmolLM2-135M prompted pair as the
guide) through a real aiohttp server on loopback, the openai SDK as the client,
`w2s: {{"w": {search['w']}, "k": {search['k']}, "l": {search['l']}}}`, max_tokens {search['max_tokens']}.
Every phase sends the same {args.requests} requests (same prompts and seeds), by 1 client in turn or by
{args.clients} concurrent clients; phases ran in the order {order} and are summed per client count.

Forward passes (deltas of `engine.batcher.stats`, the numbers behind /metrics):

{table(["clients", "requests", "forward passes", "passes / request", "rows", "rows / pass (mean)",
        "rows / pass (distribution: rows×passes)", "real tokens", "padded tokens", "real / padded (metric)",
        "fed efficiency", "attended efficiency"], rows_b)}
{ratio}
- *real / padded (metric)*: `tokens / padded_tokens` as the batcher counts them: new tokens fed over
  B x (max cached + max new). The cached prefix is in the denominator only, so this is low even without padding.
- *fed efficiency*: new tokens / (B x max new tokens): the padding waste of the positions the model runs
  its layers on (most of the compute).
- *attended efficiency*: (cached + new) / (B x (max cached + max new)): the padding waste of the attention span.

Time (seconds; latency per request as the client saw it):

{table(["clients", "requests", "wall", "requests / min", "mean latency", "median latency", "max latency",
        "forward-pass compute", "ms / pass", "ms / row", "scorer wait for the model thread",
        "scorer busy (metric)",
        "generate calls", "generate compute", "model thread busy / wall", "process CPU", "CPU / wall"], rows_t)}

- *forward-pass compute*: time inside `forward_rows` in the model thread; *scorer wait*: from the batcher
  handing a pass to the model thread until it starts (the thread is shared with the upstream's generate
  calls); *scorer busy (metric)* is `w2s_scorer_busy_seconds_total`, which counts both (compute + wait).
- *process CPU*: this process's CPU time (every thread). With 1 torch thread the model thread can use
  at most one core, so CPU / wall well under 1 while the model thread is always busy means other work on
  the machine took the core: compare compute columns between phases only with that in mind.

Checks:

{chr(10).join("- " + c for c in checks)}
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="max_tokens 16 and one phase each: about 3 minutes")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the concurrent phase")
    ap.add_argument("--requests", type=int, default=8, help="requests per phase")
    threads_arg(ap)
    ap.add_argument("--out", help="markdown file (default bench/results/batching/batching.md)")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("batching", parser(), run, report, argv)


if __name__ == "__main__":
    main()
