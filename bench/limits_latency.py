"""Does one big search keep the server responsive? /health and the 400s while the largest allowed search runs.

    HF_HUB_OFFLINE=1 python -m bench.limits_latency [--seconds 60] [--quick]

A `w2s serve` process runs the embedded default (Gemma 3 270M upstream, SmolLM2
guide) with its default operator limits. This script probes it from another
process: GET /health, a request over the limits (`"w2s": {"w": 200, "k": 200}`,
the request that used to take the box) and a 40,000-word chat message (over Gemma's 32k context:
counted from slices of it off the event loop, proxy/core/context.py) every 25 ms, first with the server idle,
then while the largest search the limits allow runs (max(w, n) * k = 64 draws a
round, l = 1 so the most rounds). Target: p99 under 50 ms for both while loaded.
The ratio loaded / idle is the number to trust on a noisy machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

from bench.lib.machine import machine, threads_arg, today
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.stats import nearest_rank
from bench.lib.tables import table

OVER = {"model": "w2s-default", "messages": [{"role": "user", "content": "hi"}], "w2s": {"w": 200, "k": 200}}
# 40,000 words (~40k tokens) against Gemma 3 270M's 32k context: the request that used to take the box (#29).
TOO_LONG = {"model": "w2s-default", "messages": [{"role": "user", "content": " ".join(["word"] * 40_000)}]}
PROBE_EVERY = 0.025


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(http, base: str, proc: subprocess.Popen) -> None:
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            async with http.get(f"{base}/ready") as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.5)


async def probe(http, base: str, seconds: float) -> dict[str, list[float]]:
    """Alternate GET /health and an over-limit POST for `seconds`; -> latencies in ms."""
    lat: dict[str, list[float]] = {"health": [], "400": [], "context": []}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        async with http.get(f"{base}/health") as r:
            await r.read()
            assert r.status == 200
        lat["health"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        async with http.post(f"{base}/v1/chat/completions", json=OVER) as r:
            body = await r.json()
            assert r.status == 400 and body["error"]["code"] == "limit_exceeded", body
        lat["400"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        async with http.post(f"{base}/v1/chat/completions", json=TOO_LONG) as r:
            body = await r.json()
            assert r.status == 400 and body["error"]["code"] == "context_length_exceeded", body
        lat["context"].append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(PROBE_EVERY)
    return lat


async def rounds_done(http, base: str) -> float:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("w2s_search_rounds_total{"))


async def run(args):
    import aiohttp

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "w2s.proxy.cli", "--threads", str(args.threads or 1), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            await wait_ready(http, base, proc)
            seconds = 20.0 if args.quick else args.seconds
            idle = await probe(http, base, seconds / 2)
            # The largest search the default limits allow: 8 x 8 = 64 draws a round, l = 1.
            big = {"model": "w2s-default", "prompt": "I watched this movie last night and", "max_tokens": 256,
                   "w2s": {"w": 8, "k": 8, "l": 1}}
            search = asyncio.ensure_future(http.post(f"{base}/v1/completions", json=big))
            await asyncio.sleep(2.0)  # let it get going
            r0 = await rounds_done(http, base)
            loaded = await probe(http, base, seconds)
            rounds = await rounds_done(http, base) - r0
            search.cancel()  # hang up: the server cancels the search
            finished = search.done() and not search.cancelled()
    finally:
        proc.terminate()
        proc.wait(30)
    return idle, loaded, rounds, finished, seconds


def report(idle, loaded, rounds, finished, seconds, args, elapsed) -> str:
    rows = []
    names = {"health": "GET /health", "400": "400 over the limits (w=k=200)",
             "context": "400 over the context (40,000 words)"}
    for kind, name in names.items():
        i, lo = idle[kind], loaded[kind]
        rows.append([name,
                     len(lo), statistics.median(i), nearest_rank(i, 0.99), statistics.median(lo), nearest_rank(lo, 0.99), max(lo),
                     nearest_rank(lo, 0.99) / nearest_rank(i, 0.99)])
    return f"""# Responsiveness while the largest allowed search runs

{today()}; {machine(note=f"the server with {args.threads or 1} torch thread; bench ran {elapsed:.0f} s")}

`bench/limits_latency.py --seconds {seconds:g}`: a `w2s serve` process (embedded default, default limits:
max_candidates 64, max_tokens 4096, max_rounds 256; Gemma 3 270M's 32k context) probed from another process
(GET /health, a request over the limits, a 40,000-word message over the context) every {PROBE_EVERY * 1000:.0f} ms,
idle for {seconds / 2:.0f} s, then for {seconds:.0f} s while one search of 8 x 8 = 64 draws a round,
l = 1, max_tokens 256 runs ({rounds:.0f} of its rounds completed meanwhile{'' if not finished else ', and it finished'}).
Target: p99 under 50 ms while loaded.

{table(["probe", "probes while loaded", "idle p50 ms", "idle p99 ms", "loaded p50 ms", "loaded p99 ms",
        "loaded max ms", "p99 loaded / idle"], rows)}
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="probing time while the search runs")
    ap.add_argument("--quick", action="store_true", help="20 s")
    ap.add_argument("--out")
    threads_arg(ap)
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("limits_latency", parser(), run, report, argv)


if __name__ == "__main__":
    main()
