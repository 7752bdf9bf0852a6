"""Long prompts within the default pair's 8k: peak memory and time of one CBS search (#29).

    HF_HUB_OFFLINE=1 python -m bench.long_prompt [--lengths 1024,2048,4096,7168] [--quick]

Each prompt length runs in a fresh child process, so a peak RSS is that search's own: the
embedded default (Gemma 3 270M upstream, the SmolLM2 prompted pair), one CBS search on the
route w2s-default (w=2, k=2, l=10, max_tokens 48, seed 0) for a chat message of T Gemma tokens,
after a warm-up search and a search on a 64-token message. Then, in the same child, one raw
forward of the prompt by each model side that reads it: Gemma's decoder over its T tokens and
SmolLM2's over each side's rendered prompt (a prompted pair: two prompts, one per system prompt).

Goals: peak memory grows linearly in T; the time a long prompt adds to a search
(search at T minus search at 64) is at most 1.5x the raw forwards of the sides that read it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from bench.lib.machine import machine, set_threads, threads_arg, today
from bench.lib.procs import bench_cmd
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.tables import table

ROUTE = "w2s-default"
SENTENCE = ("The harbour town wakes slowly; a retired sailor climbs to the lighthouse, counts the boats "
            "and writes their names in a notebook he has kept for forty years. ")
ASK = "Write a short review of a film about him."


class PeakRSS:
    """This process's peak RSS while the block runs, sampled every 5 ms."""

    def __enter__(self) -> "PeakRSS":
        import psutil

        self.proc, self.peak, self._done = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._t.join()


async def prompt_of(engine, tokens: int):
    """A chat message that the upstream reads as `tokens` tokens (to within a sentence)."""
    from w2s.proxy.core.types import Prompt

    sampler = engine.samplers["gemma-local"]
    one = (await sampler.count_prompt(Prompt.chat([{"role": "user", "content": SENTENCE * 10 + ASK}]), None)).tokens
    base = (await sampler.count_prompt(Prompt.chat([{"role": "user", "content": ASK}]), None)).tokens
    n = max(0, round((tokens - base) * 10 / (one - base)))
    prompt = Prompt.chat([{"role": "user", "content": SENTENCE * n + ASK}])
    return prompt, (await sampler.count_prompt(prompt, None)).tokens


def raw_forward_seconds(loaded, ids: list[int]) -> float:
    """One forward of `ids` through the model's decoder (no cache, no logits), timed."""
    import torch

    x = torch.tensor([ids], device=loaded.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        loaded.model.get_decoder()(input_ids=x, use_cache=False)
    return time.perf_counter() - t0


async def timed_search(engine, prompt) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = await engine.run(engine.plan(ROUTE, {"seed": 0}), prompt)
    return time.perf_counter() - t0, result


async def child(tokens: int, threads: int, reps: int = 1) -> dict:
    """Short and long searches alternated `reps` times (so a drift in the machine's load falls on both), each
    long one cold: the upstream's prompt cache is emptied first, as for a new prompt. Medians; peak RSS of
    the first long search."""
    from w2s.providers.prefix_cache import PrefixCache
    from w2s.proxy.core.config_load import load_config
    from w2s.proxy.engine import Engine

    set_threads(threads)
    engine = Engine(load_config(ROOT / "config.yaml"))
    await engine.start()
    try:
        short, short_tokens = await prompt_of(engine, 64)
        await timed_search(engine, short)  # warm-up: one-off buffers and caches out of the way
        prompt, got = await prompt_of(engine, tokens)
        shorts, longs, peak = [], [], None
        for _ in range(reps):
            shorts.append((await timed_search(engine, short))[0])
            engine.samplers["gemma-local"].prefixes = PrefixCache()  # cold: a new prompt's prefill is timed
            with PeakRSS() as rss:
                t_long, result = await timed_search(engine, prompt)
            longs.append(t_long)
            peak = peak or rss
        fwd = [await forwards(engine, prompt) for _ in range(reps)]
        return {"tokens": got, "short_tokens": short_tokens, "reps": reps, "search_s": statistics.median(longs),
                "search_short_s": statistics.median(shorts), "searches_s": longs, "short_searches_s": shorts,
                "peak_mb": peak.peak / 1e6, "base_mb": peak.base / 1e6, "notes": result.notes,
                "fwd_up_s": statistics.median(f["fwd_up_s"] for f in fwd),
                "fwd_guide_s": [statistics.median(f["fwd_guide_s"][i] for f in fwd) for i in range(2)],
                "guide_tokens": fwd[0]["guide_tokens"]}
    finally:
        await engine.aclose()


async def forwards(engine, prompt) -> dict:
    """The raw forwards: the upstream's prompt once, each guide side's own rendered prompt once."""
    up = engine.pool.get(engine.samplers["gemma-local"].cfg.model)
    up_ids = up.tokenizer(prompt.messages[0]["content"])["input_ids"]
    session = engine.guides["positive-critic"].session(prompt)  # no answer budget: each side's whole prompt
    sides = [(side.model, enc.prompt_ids) for side, enc in zip(session.pair.sides, session._enc)]
    return {"fwd_up_s": await engine.pool.run(raw_forward_seconds, up, up_ids),
            "fwd_guide_s": [await engine.pool.run(raw_forward_seconds, m, ids) for m, ids in sides],
            "guide_tokens": [len(ids) for _, ids in sides]}


async def run(args):
    if args.child:
        print(json.dumps(await child(args.child, args.threads, args.reps)))
        sys.exit(0)
    lengths = [512, 1024] if args.quick else [int(x) for x in args.lengths.split(",")]
    rows = []
    for n in lengths:
        done = subprocess.run(bench_cmd("long_prompt", "--child", str(n), "--threads", str(args.threads),
                                        "--reps", str(args.reps)),
                              cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"child for {n} tokens failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{n}: {rows[-1]}", file=sys.stderr)
    return (rows,)


def reps_note(rows) -> str:
    n = rows[0].get("reps", 1)
    return "" if n == 1 else (f"; {n} short and {n} long searches alternated (each long one with the upstream's "
                              f"prompt cache emptied) and {n} raw forwards each, medians")


def report(rows, args, elapsed) -> str:
    out = []
    for r in rows:
        added = r["search_s"] - r["search_short_s"]
        fwd = r["fwd_up_s"] + sum(r["fwd_guide_s"])
        out.append([r["tokens"], "/".join(str(t) for t in r["guide_tokens"]), round(r["peak_mb"]),
                    round(r["peak_mb"] - r["base_mb"]), round(r["search_s"], 1), round(added, 1),
                    round(r["fwd_up_s"], 1), round(sum(r["fwd_guide_s"]), 1), round(added / fwd, 2),
                    "yes" if any("cut for scoring" in n for n in r["notes"]) else "no"])
    return f"""# Long prompts: memory and time of one CBS search

{today()}; {machine(note=f"{args.threads} torch thread(s); bench ran {elapsed:.0f} s")}

`bench/long_prompt.py{' --quick' if args.quick else ''}`: the embedded default (Gemma 3 270M upstream, SmolLM2 prompted
pair), one CBS search on `{ROUTE}` (w=2, k=2, l=10, max_tokens 48, seed 0) per prompt length, each length in a
fresh process{reps_note(rows)}. *added* = search at T minus the same search on a {rows[0]['short_tokens']}-token message; *raw
forwards* = one decoder forward of the prompt by Gemma, and by SmolLM2 for each side's own rendered prompt (2
sides). Goals: peak RSS linear in T; added / raw forwards <= 1.5.

{table(["prompt tokens (Gemma)", "guide tokens (tuned/untuned)", "peak RSS MB", "peak - before search MB",
        "search s", "added s", "raw forward Gemma s", "raw forwards SmolLM2 s", "added / raw forwards",
        "guide cut the prompt"], out)}
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1024,2048,4096,7168", help="prompt lengths in Gemma tokens")
    ap.add_argument("--quick", action="store_true", help="512 and 1024 tokens")
    ap.add_argument("--reps", type=int, default=1,
                    help="short/long search pairs per length, alternated, medians (each long search cold)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out")
    threads_arg(ap)
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("long_prompt", parser(), run, report, argv)


if __name__ == "__main__":
    main()
