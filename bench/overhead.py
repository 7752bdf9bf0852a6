"""Pass-through overhead: what the proxy adds over calling the local model directly.

One process, one event loop, one `Engine` over the embedded config.yaml. The
same engine serves a real aiohttp server on loopback (`create_app(config,
engine)`), and the real openai SDK (`AsyncOpenAI`, max_retries=0) is the client.

    direct  = await engine.run("gemma-passthrough", Prompt.raw(p), {"max_tokens": M, "seed": S})
    proxied = await client.completions.create(model="gemma-passthrough", prompt=p, max_tokens=M, seed=S)

Both sides do the same model work (same prompt, same seed: the same tokens,
checked), and they are interleaved so that the machine's noise hits both:
at 1 client pairs alternate D,P / P,D; at 16 clients whole waves of 16
concurrent requests alternate D,P,P,D. The local model runs one generate call
at a time in one worker thread, so at 16 clients the latency is mostly queuing;
throughput (requests / wave wall time) is reported too.

Three model costs:
  * max_tokens=8 : the brief's setting;
  * max_tokens=1 : near-zero model cost, so the proxy's own cost is visible;
  * stub engine  : no model at all (a real Engine over tests/scripted.py's parts behind the
    same server code): the proxy + SDK + loopback HTTP cost alone.

    python -m bench.overhead            # about 4-8 min on 2 shared cores (depends on the load)
    python -m bench.overhead --quick    # about 3 min

Writes bench/results/overhead/overhead.md (overhead_quick.md with --quick, or --out).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass, field

from bench.lib.machine import machine, set_threads, threads_arg, today
from bench.lib.prompts import PROMPTS
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.stats import mean, quantile
from bench.lib.tables import table

ROUTE = "gemma-passthrough"
STUB_ROUTE = "fake-pass"
SEED = 1234


# --- small stats and formatting -------------------------------------------------


def ms(x: float) -> str:
    if math.isnan(x):
        return "—"
    v = x * 1000
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


# --- measurement ------------------------------------------------------------------


@dataclass
class Side:
    lat: list[float] = field(default_factory=list)  # per request, seconds
    waves: list[float] = field(default_factory=list)  # wall time of each concurrent wave
    texts: dict[int, str] = field(default_factory=dict)  # request index -> text (first seen)
    tokens: int = 0

    @property
    def throughput(self) -> float:
        return len(self.lat) / sum(self.waves) if self.waves else math.nan


@dataclass
class Section:
    cost: str
    clients: int
    direct: Side = field(default_factory=Side)
    proxied: Side = field(default_factory=Side)
    paired: list[float] = field(default_factory=list)  # proxied - direct, same request (c=1)
    mismatches: int = 0
    server: dict[str, float] = field(default_factory=dict)  # mean server-side seconds per proxied request
    wall: float = 0.0


class Bench:
    def __init__(self, engine, client, route: str, metrics, max_tokens: int):
        self.engine, self.client, self.route = engine, client, route
        self.metrics, self.max_tokens = metrics, max_tokens

    async def direct(self, i: int) -> tuple[float, str, int]:
        from w2s.proxy.core.types import Prompt

        t0 = time.perf_counter()
        plan = self.engine.plan(self.route, {"max_tokens": self.max_tokens, "seed": SEED + i})
        r = await self.engine.run(plan, Prompt.raw(PROMPTS[i % len(PROMPTS)]))
        return time.perf_counter() - t0, r.best.text, r.best.completion_tokens

    async def proxied(self, i: int) -> tuple[float, str, int]:
        t0 = time.perf_counter()
        r = await self.client.completions.create(model=self.route, prompt=PROMPTS[i % len(PROMPTS)],
                                                 max_tokens=self.max_tokens, seed=SEED + i)
        return time.perf_counter() - t0, r.choices[0].text, r.usage.completion_tokens

    def _record(self, sec: Section, side: Side, i: int, out: tuple[float, str, int]) -> None:
        dt, text, toks = out
        side.lat.append(dt)
        side.tokens += toks
        side.texts.setdefault(i, text)

    def _server_snapshot(self) -> dict[str, float]:
        """Sums of the server's own histograms for this route (proxy.server.metrics.ProxyMetrics)."""
        get = self.metrics.registry.get_sample_value
        req = {"endpoint": "/v1/completions", "route": self.route, "status": "200"}
        return {
            "n": get("w2s_request_seconds_count", req) or 0,
            "request": get("w2s_request_seconds_sum", req) or 0.0,
            "search": get("w2s_search_seconds_sum", {"route": self.route, "mode": "passthrough"}) or 0.0,
            "queue": get("w2s_queue_seconds_sum", {"route": self.route}) or 0.0,
        }

    async def sequential(self, cost: str, pairs: int) -> Section:
        sec = Section(cost, 1)
        before = self._server_snapshot()
        t0 = time.perf_counter()
        for i in range(pairs):
            order = ("d", "p") if i % 2 == 0 else ("p", "d")
            got = {}
            for which in order:
                got[which] = await (self.direct(i) if which == "d" else self.proxied(i))
            self._record(sec, sec.direct, i, got["d"])
            self._record(sec, sec.proxied, i, got["p"])
            sec.paired.append(got["p"][0] - got["d"][0])
            sec.mismatches += got["d"][1] != got["p"][1]
        sec.wall = time.perf_counter() - t0
        sec.direct.waves = [sum(sec.direct.lat)]
        sec.proxied.waves = [sum(sec.proxied.lat)]
        sec.server = self._server_delta(before, sec)
        return sec

    async def concurrent(self, cost: str, clients: int, waves: int) -> Section:
        sec = Section(cost, clients)
        before = self._server_snapshot()
        t0 = time.perf_counter()
        for w in range(waves):
            which = "d" if w % 4 in (0, 3) else "p"  # D P P D D P P D ...
            side = sec.direct if which == "d" else sec.proxied
            call = self.direct if which == "d" else self.proxied
            tw = time.perf_counter()
            outs = await asyncio.gather(*(call(i) for i in range(clients)))
            side.waves.append(time.perf_counter() - tw)
            for i, out in enumerate(outs):
                self._record(sec, side, i, out)
        sec.wall = time.perf_counter() - t0
        for i, text in sec.direct.texts.items():
            if i in sec.proxied.texts:
                sec.mismatches += text != sec.proxied.texts[i]
        sec.server = self._server_delta(before, sec)
        return sec

    def _server_delta(self, before: dict[str, float], sec: Section) -> dict[str, float]:
        after = self._server_snapshot()
        n = after["n"] - before["n"]
        if n <= 0:
            return {}
        d = {k: (after[k] - before[k]) / n for k in ("request", "search", "queue")}
        d["client"] = mean(sec.proxied.lat)
        return d


# --- the run ---------------------------------------------------------------------


def sizes(quick: bool) -> dict[str, tuple[int, int]]:
    """(pairs at 1 client, waves at --clients) of each section."""
    return {"stub": (100, 8) if quick else (300, 16), "1": (20, 4) if quick else (40, 8),
            "main": (10, 2) if quick else (40, 8)}


async def stub_sections(args, runners: list) -> list[Section]:
    """The same server code over a real Engine with scripted parts: the proxy's own cost, no model at all."""
    from openai import AsyncOpenAI

    from bench.lib.testkit import fake_config, scripted_engine
    from w2s.proxy.server.app import create_app, start
    from w2s.proxy.server.service import SERVICE

    pairs, waves = sizes(args.quick)["stub"]
    stub_cfg = fake_config(max_concurrent_searches=8, max_queue=64)
    stub = scripted_engine(stub_cfg)
    await stub.start()
    app = create_app(stub_cfg, stub)
    runner, port = await start(app, "127.0.0.1", 0)
    runners.append(runner)
    async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                           timeout=600) as client:
        b = Bench(stub, client, STUB_ROUTE, app[SERVICE].metrics, 8)
        for i in range(5):  # warm-up: connection, pydantic, first-call paths
            await b.direct(i), await b.proxied(i)
        out = [await b.sequential("stub engine (no model)", pairs),
               await b.concurrent("stub engine (no model)", args.clients, waves)]
    print("stub engine done", file=sys.stderr, flush=True)
    return out


async def model_sections(args, app, engine) -> list[Section]:
    """The embedded default (Gemma 3 270M), max_tokens 1 and --max-tokens, at 1 client and at --clients."""
    from openai import AsyncOpenAI

    from w2s.proxy.server.app import start
    from w2s.proxy.server.service import SERVICE

    size = sizes(args.quick)
    runner, port = await start(app, "127.0.0.1", 0)
    sections = []
    try:
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                               timeout=600) as client:
            for mt, (pairs, waves) in ((1, size["1"]), (args.max_tokens, size["main"])):
                b = Bench(engine, client, ROUTE, app[SERVICE].metrics, mt)
                for i in range(2):
                    await b.direct(i), await b.proxied(i)
                label = f"Gemma 270M, max_tokens={mt}"
                sections.append(await b.sequential(label, pairs))
                print(f"{label}, 1 client: {sections[-1].wall:.0f} s", file=sys.stderr, flush=True)
                sections.append(await b.concurrent(label, args.clients, waves))
                print(f"{label}, {args.clients} clients: {sections[-1].wall:.0f} s", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()
    return sections


async def run(args) -> tuple[list[Section], str]:
    set_threads(args.threads)

    from w2s.proxy.core.config_load import load_config
    from w2s.proxy.engine import Engine
    from w2s.proxy.server.app import create_app

    runners = []
    try:
        sections = await stub_sections(args, runners)
        t0 = time.perf_counter()
        cfg = load_config(ROOT / "config.yaml")
        engine = Engine(cfg)
        await engine.start()
        print(f"models loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        try:
            sections += await model_sections(args, create_app(cfg, engine), engine)
        finally:
            await engine.aclose()
    finally:
        for r in runners:
            await r.cleanup()
    return sections, machine(note="shared with other work (timings noisy)")


def spread(s: Section) -> str:
    """How noisy the machine was: the range of wave wall times per side, or the paired Δ's IQR."""
    if s.paired:
        return f"{ms(quantile(s.paired, 0.25))} … {ms(quantile(s.paired, 0.75))}"
    if not s.direct.waves or not s.proxied.waves:
        return "—"

    def rng(w: list[float]) -> str:
        return f"{min(w):.2f}–{max(w):.2f}" if min(w) >= 0.1 else f"{min(w):.3f}–{max(w):.3f}"

    return f"{rng(s.direct.waves)} / {rng(s.proxied.waves)}"


def overhead(s: Section) -> tuple[float, float, str]:
    """The proxy's overhead, median and p99: paired differences at 1 client, else the quantiles' difference."""
    if s.paired:
        return quantile(s.paired, 0.5), quantile(s.paired, 0.99), "paired"
    return (quantile(s.proxied.lat, 0.5) - quantile(s.direct.lat, 0.5),
            quantile(s.proxied.lat, 0.99) - quantile(s.direct.lat, 0.99), "Δ of quantiles")


def latency_row(s: Section) -> list[str]:
    d, p = s.direct, s.proxied
    dm, pm = quantile(d.lat, 0.5), quantile(p.lat, 0.5)
    ov_med, ov_99, how = overhead(s)
    return [s.cost, str(s.clients), str(len(p.lat)), ms(dm), ms(quantile(d.lat, 0.99)), ms(pm),
            ms(quantile(p.lat, 0.99)), f"**{ms(ov_med)}**", f"**{ms(ov_99)}**", how,
            f"{pm / dm:.3f}" if dm > 0 else "—", f"{d.throughput:.1f}", f"{p.throughput:.1f}",
            f"{p.throughput / d.throughput:.3f}" if d.throughput > 0 else "—",
            ms(1 / p.throughput - 1 / d.throughput), spread(s), str(s.mismatches)]


def server_row(s: Section) -> list[str]:
    sv = s.server
    own = sv["request"] - sv["search"] - sv["queue"]
    return [s.cost, str(s.clients), ms(sv["client"]), ms(sv["request"]), ms(sv["queue"]), ms(sv["search"]),
            ms(own), ms(sv["client"] - sv["request"])]


def report(sections: list[Section], machine: str, args, elapsed: float) -> str:
    lat = table(["model cost", "clients", "requests / side", "direct median", "direct p99", "proxied median",
                 "proxied p99", "overhead median", "overhead p99", "overhead as", "proxied / direct (median)",
                 "direct req/s", "proxied req/s", "proxied / direct (req/s)", "wall added / request",
                 "noise: D / P wave walls, s (1 client: paired Δ IQR, ms)", "text mismatches"],
                [latency_row(s) for s in sections])
    srv = table(["model cost", "clients", "client latency", "server request", "admission queue",
                 "engine.run (search)", "server's own (request - queue - search)", "SDK + HTTP (client - request)"],
                [server_row(s) for s in sections if s.server])
    return page(args, machine, elapsed, lat, srv)


def page(args, machine: str, elapsed: float, lat: str, srv: str) -> str:
    cmd = "python -m bench.overhead" + (" --quick" if args.quick else "")
    return f"""# Pass-through overhead

{today()}, `{cmd}`, {elapsed / 60:.1f} min.
Machine: {machine}.

Route `gemma-passthrough` of the embedded config.yaml (plain sampling from Gemma 3 270M, no search) through
a real aiohttp server on loopback with the openai SDK (`AsyncOpenAI`, max_retries=0), against
`engine.run(...)` on the same Engine in the same process and event loop. Same prompt and seed on both sides
(the "text mismatches" column checks that they produced the same text). Times in milliseconds.

- 1 client: direct and proxied alternate per request (D,P then P,D); overhead = the median and p99 of the
  per-pair difference proxied - direct.
- {args.clients} clients: waves of {args.clients} concurrent requests alternate D,P,P,D; overhead = proxied
  quantile - direct quantile (latency per request, queuing included: the model runs one generate call at a
  time in one thread); req/s = requests / wave wall time (at 1 client: / the sum of latencies);
  wall added / request = 1 / proxied req/s - 1 / direct req/s, the capacity the proxy costs.
- The stub engine row is the same server code over a real Engine with tests/support/scripted.py's parts (no model): the proxy's
  own cost, without the model's noise. A p99 over a few dozen samples is close to the maximum.
- The machine's noise is in the "noise" column: where the spread of wave walls is wider than the
  proxied - direct difference, that difference is noise; the second table measures the proxy's own share
  directly.

{lat}

Where the proxied time goes (server-side means per proxied request, from the server's own
`w2s_request_seconds`, `w2s_queue_seconds` and `w2s_search_seconds` histograms):

{srv}
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests: about 3 minutes")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients of the concurrent rows")
    ap.add_argument("--max-tokens", type=int, default=8, help="max_tokens of the main rows")
    threads_arg(ap)
    ap.add_argument("--out", help="markdown file (default bench/results/overhead/overhead.md)")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("overhead", parser(), run, report, argv)


if __name__ == "__main__":
    main()
