"""The cooldown timeline against a dead upstream, with the default health settings.

    HF_HUB_OFFLINE=1 python -m bench.cooldown [--down 30] [--after 15]

A real proxy server (in this process) with one OpenAI-compatible upstream, the
fault-injecting server of the tests (tests/fault_upstream.py), at the default
settings: 4 retries, allowed_fails 3, cooldown_seconds 30. At t = 0 the upstream
dies (its port refuses connections); a client sends one request at a time, 0.5 s
apart; after `--down` seconds the upstream comes back on the same port. Each
request's status, latency and Retry-After is listed: the first failures pay their
retries, then the proxy answers 503 at once until a probe (GET /v1/models) or the
end of the cooldown lets traffic back.
"""
from __future__ import annotations

import argparse
import asyncio
import time

from bench.lib.machine import machine, today
from bench.lib.runner import run_main
from bench.lib.tables import table


async def run(args):
    import aiohttp

    from bench.lib.testkit import FaultUpstream
    from w2s.proxy.core.config_load import parse_config
    from w2s.proxy.engine import Engine
    from w2s.proxy.server.app import create_app, start

    fake = await FaultUpstream().start()
    cfg = parse_config({
        "upstreams": {"remote": {"provider": "openai", "mode": "completions", "base_url": f"{fake.base_url}/v1",
                                 "model": "m"}},  # the default retries and health settings
        "routes": {"remote-pass": {"upstream": "remote", "passthrough": True, "search": {"max_tokens": 4}}},
    }, "cooldown bench")
    engine = Engine(cfg)
    await engine.start()
    runner, port = await start(create_app(cfg, engine))
    rows = []
    body = {"model": "remote-pass", "prompt": "x", "max_tokens": 2}
    try:
        async with aiohttp.ClientSession() as http:
            await fake.close()  # t = 0: the upstream dies
            t0 = time.monotonic()
            revived = False
            while time.monotonic() - t0 < args.down + args.after:
                if not revived and time.monotonic() - t0 >= args.down:
                    await fake.start()
                    revived = True
                    rows.append([f"{time.monotonic() - t0:.1f}", "— upstream back —", "", "", ""])
                t = time.monotonic()
                async with http.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as r:
                    out = await r.json()
                    rows.append([f"{t - t0:.1f}", r.status, f"{(time.monotonic() - t) * 1000:.0f}",
                                 r.headers.get("Retry-After", ""),
                                 (out.get("error") or {}).get("type", "ok") if isinstance(out, dict) else ""])
                await asyncio.sleep(0.5)
            health = engine.health()["remote"]
    finally:
        await runner.cleanup()
        await engine.aclose()
        await fake.close()
    return rows, health


def report(rows, health, args, elapsed) -> str:
    return f"""# Cooldown timeline against a dead upstream

{today()}; {machine(note=f"bench ran {elapsed:.0f} s")}

`bench/cooldown.py --down {args.down:g} --after {args.after:g}`: one OpenAI-compatible upstream at the default
settings (max_retries 4, allowed_fails 3, cooldown_seconds 30), dead from t = 0 (connection refused) and back at
t = {args.down:g} s; one request at a time, 0.5 s apart, through the proxy. Upstream state at the end:
{health["state"]}, {health["cooldowns"]} cooldown(s).

{table(["t (s)", "status", "latency (ms)", "Retry-After", "error type"], rows)}
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--down", type=float, default=30.0, help="seconds the upstream stays dead")
    ap.add_argument("--after", type=float, default=10.0, help="seconds of requests after it is back")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("cooldown", parser(), run, report, argv)


if __name__ == "__main__":
    main()
