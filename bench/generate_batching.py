"""Local upstream: concurrent searches with and without merged generate calls.

One `Engine` over the embedded config.yaml (Gemma 3 270M upstream, SmolLM2
guide pair). Each phase runs the same 8 seeded guided searches on route
`w2s-default` (w=k=2, l=8, max_tokens 24; --quick: 16) from 8 concurrent
tasks, with the local sampler's cross-search batching off (max_batch_rows 1:
one generate call per search round, as before providers/generate_batcher.py) or on
(the config's max_batch_rows). Phases alternate off,on,on,off (--quick:
off,on) so the machine's noise hits both; a 1-client phase of each is the
control (nothing to merge: it should be a tie).

Every row samples with its own seeded RNG (providers/row_sampling.py), so both
settings draw the same chunks and do the same work (up to float rounding);
the table shows how many answers came out identical.

    python -m bench.generate_batching            # about 10 min on 2 shared cores
    python -m bench.generate_batching --quick    # about 4 min

Writes bench/results/generate_batching/generate_batching.md (generate_batching_quick.md with --quick, or --out).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass

from bench.lib.machine import machine, set_threads, threads_arg, today
from bench.lib.prompts import PROMPTS
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.tables import table

ROUTE = "w2s-default"
SEED = 2024


@dataclass
class Phase:
    merge: bool
    clients: int
    wall: float = 0.0
    answers: int = 0
    rounds: int = 0
    upstream_tokens: int = 0
    generate_calls: int = 0
    generate_rows: int = 0
    scorer_passes: int = 0
    latencies: list[float] | None = None
    texts: dict[str, str] | None = None  # prompt -> answer

    def add(self, other: "Phase") -> None:
        for f in ("wall", "answers", "rounds", "upstream_tokens", "generate_calls", "generate_rows", "scorer_passes"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.latencies = (self.latencies or []) + (other.latencies or [])
        self.texts = {**(other.texts or {}), **(self.texts or {})}


async def run_phase(engine, sampler, merge: bool, clients: int, search: dict, max_rows: int) -> Phase:
    from w2s.proxy.core.types import Prompt

    sampler.batcher.max_rows = max_rows if merge else 1
    gen0 = (sampler.batcher.stats.calls, sampler.batcher.stats.rows)
    sc0 = engine.batcher.stats.batches
    todo = list(enumerate(PROMPTS))
    ph = Phase(merge, clients, latencies=[], texts={})

    async def worker() -> None:
        while todo:
            i, text = todo.pop(0)
            t = time.perf_counter()
            res = await engine.run(engine.plan(ROUTE, {**search, "seed": SEED + i}), Prompt.raw(text))
            ph.texts[text] = res.best.text
            ph.latencies.append(time.perf_counter() - t)
            ph.answers += 1
            ph.rounds += len(res.rounds)
            ph.upstream_tokens += res.upstream_completion_tokens

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    ph.wall = time.perf_counter() - t0
    ph.generate_calls = sampler.batcher.stats.calls - gen0[0]
    ph.generate_rows = sampler.batcher.stats.rows - gen0[1]
    ph.scorer_passes = engine.batcher.stats.batches - sc0
    return ph


async def run(args) -> tuple[dict, dict]:
    from w2s.proxy.core.config_load import load_config
    from w2s.proxy.core.types import Prompt
    from w2s.proxy.engine import Engine

    set_threads(args.threads)
    search = {"w": 2, "k": 2, "l": 8, "max_tokens": 16 if args.quick else 24}
    cfg = load_config(ROOT / "config.yaml")
    engine = Engine(cfg)
    t0 = time.perf_counter()
    await engine.start()
    print(f"models loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    sampler = engine.samplers[cfg.routes[ROUTE].upstream]
    max_rows = sampler.batcher.max_rows
    order = [False, True] if args.quick else [False, True, True, False]
    merged: dict[tuple[bool, int], Phase] = {}
    try:
        await engine.run(engine.plan(ROUTE, {**search, "max_tokens": 2}), Prompt.raw("Warm-up:"))
        for clients in (args.clients, 1):
            for merge in order[: 2 if clients == 1 else None]:  # the 1-client control: one phase each
                ph = await run_phase(engine, sampler, merge, clients, search, max_rows)
                print(f"{clients} client(s), merge {'on' if merge else 'off'}: {ph.wall:.0f} s, "
                      f"{ph.generate_calls} generate calls", file=sys.stderr, flush=True)
                key = (merge, clients)
                if key in merged:
                    merged[key].add(ph)
                else:
                    merged[key] = ph
    finally:
        sampler.batcher.max_rows = max_rows
        await engine.aclose()
    return merged, {"search": search, "max_rows": max_rows}


def report(phases: dict, info: dict, args, elapsed: float) -> str:
    rows = []
    for clients in (args.clients, 1):
        off, on = phases[(False, clients)], phases[(True, clients)]
        for ph in (off, on):
            rows.append([
                clients, "on" if ph.merge else "off", ph.answers,
                ph.upstream_tokens / ph.answers, ph.rounds / ph.answers,
                ph.generate_calls, ph.generate_rows / max(ph.generate_calls, 1),
                ph.scorer_passes, ph.wall, 60 * ph.answers / ph.wall,
                sum(ph.latencies) / len(ph.latencies),
                (60 * ph.answers / ph.wall) / (60 * off.answers / off.wall),
            ])
    s = info["search"]
    head = [
        f"# Local upstream: merged generate calls (bench/generate_batching.py{' --quick' if args.quick else ''})",
        "",
        f"{today()}; {machine(note='CPU only, shared with other jobs (timings noisy)')}.",
        "",
        f"Embedded config.yaml, route `{ROUTE}` (Gemma 3 270M base upstream, SmolLM2 prompted pair), "
        f"w={s['w']} k={s['k']} l={s['l']} max_tokens={s['max_tokens']}, seed {SEED}+i; {len(PROMPTS)} searches per phase "
        f"from {args.clients} concurrent tasks (and from 1, the control). merge off = max_batch_rows 1 (one generate "
        f"call per search round); on = max_batch_rows {info['max_rows']}. Phases alternated; rows of the same "
        f"setting are summed. Total {elapsed:.0f} s.",
        "",
        table(["clients", "merge", "answers", "upstream tokens / answer", "rounds / answer", "generate calls",
               "rows / generate call", "scorer passes", "wall s", "answers / min", "mean latency s",
               "throughput vs off"], rows),
        "",
        "Same answer with merging on and off (same seeds): " + ", ".join(
            f"{sum(phases[(True, c)].texts[t] == phases[(False, c)].texts[t] for t in PROMPTS)}/{len(PROMPTS)} "
            f"at {c} client(s)" for c in (args.clients, 1)) + ".",
        "",
    ]
    return "\n".join(head)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="max_tokens 16, one phase each")
    ap.add_argument("--clients", type=int, default=8)
    threads_arg(ap)
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("generate_batching", parser(), run, report, argv)


if __name__ == "__main__":
    main()
