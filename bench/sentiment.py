"""Controlled sentiment, small and offline: does the guide pair steer the upstream?

A reproduction in miniature of the paper's controlled-sentiment experiment
(arXiv 2405.19262, section 5.1):

  upstream  Gemma 3 270M base continues neutral movie-review openings (bench/lib/openings.py)
  guide     SmolLM2-135M-Instruct prompted as a positive critic vs a negative critic
            (config.yaml, guide "positive-critic" of route "w2s-default")
  judge     VADER compound sentiment of the continuation only (independent of both models)
  methods   plain sampling (W=K=1), Best-of-N 4 and 16 (W=1, K=N, one round),
            CBS (W,K,L) = (2,2,10) and (4,4,5); at most 50 upstream tokens; T=0.7, top-k 50

Reported per method: judge mean ± s.e., win rate against plain sampling on the
same opening (ties half), the guide's own reward, upstream tokens per answer,
wall time, and the mean log-likelihood per token of the answer under the
upstream model (log p_gemma(answer | opening) / tokens: how far the search
moved from what the upstream would write by itself, the KL side).

    python -m bench.sentiment --quick                        # smoke test, a few minutes
    python -m bench.sentiment --prompts 12 --workers 2       # ~20 min here
    python -m bench.sentiment                                # all 120 openings (hours on 2 CPU cores)
    python -m bench.sentiment --merge-shards bench/results/sentiment/shards/*.json --workers 2 \
        --notes bench/results/sentiment/notes.md             # rebuilds bench/results/sentiment/sentiment.md
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

from bench.lib.loglik import upstream_loglik_rows
from bench.lib.machine import set_threads
from bench.lib.openings import OPENINGS
from bench.lib.procs import Child, bench_cmd, wait_all
from bench.lib.results import ROOT, write_result
from bench.lib.sentiment_report import METHODS, Method, Run, report

ROUTE = "w2s-default"
QUICK_PROMPTS = 3
QUICK_MAX_TOKENS = 24  # --quick is a smoke test: the numbers mean little


def build_config(upstream_dtype: str, guide_dtype: str):
    from w2s.proxy.core.config_load import load_config

    cfg = load_config(ROOT / "config.yaml")
    up_model = cfg.upstreams[cfg.routes[ROUTE].upstream].model
    for name, m in cfg.models.items():
        m.device = "cpu"
        m.dtype = upstream_dtype if name == up_model else guide_dtype
    # Only the route we measure: nothing else gets loaded.
    cfg.routes = {ROUTE: cfg.routes[ROUTE]}
    cfg.default_route = ROUTE
    return cfg


async def run_method(engine, method: Method, prompts, args, indices: list[int]) -> Run:
    from w2s.proxy.core.types import SearchParams

    run = Run(method)
    sem = asyncio.Semaphore(args.concurrency)
    n = len(prompts)
    out: list = [None] * n

    async def one(i: int):
        params = SearchParams(w=method.w, k=method.k, l=method.l, max_tokens=args.max_tokens,
                              temperature=args.temperature, top_p=1.0, top_k=args.top_k,
                              seed=args.seed * 1_000 + indices[i] * 10 + METHODS.index(method))
        async with sem:
            t0 = time.perf_counter()
            res = await engine.run(engine.plan(ROUTE, dataclasses.asdict(params)), prompts[i])
            out[i] = (res, time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    run.wall = time.perf_counter() - t0
    for res, dt in out:
        run.texts.append(res.best.text)
        run.finishes.append(res.best.finish_reason)
        run.upstream_tokens.append(res.upstream_completion_tokens)
        run.upstream_calls.append(res.upstream_calls)
        run.scorer_tokens.append(res.scorer_tokens)
        run.latency.append(dt)
    return run


async def evaluate(engine, runs: list[Run], prompts, openings) -> float:
    """Judge (VADER), guide reward, upstream log-likelihood. Returns seconds spent."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from w2s.proxy.core.types import ScoreItem
    from w2s.scorers.rows import forward_rows

    t0 = time.perf_counter()
    vader = SentimentIntensityAnalyzer()
    for r in runs:
        r.judge = [vader.polarity_scores(t)["compound"] for t in r.texts]
    pair = engine.guides[engine.config.routes[ROUTE].guide]
    up = engine.pool.get(engine.config.upstreams[engine.config.routes[ROUTE].upstream].model)
    pad = up.tokenizer.pad_token_id or 0

    async def per_prompt(i: int):
        items = [ScoreItem(r.texts[i], r.finishes[i] == "stop") for r in runs]
        sess = pair.session(prompts[i])
        try:
            scores = await sess.score(items)
        finally:
            sess.close()
        rows, starts = upstream_loglik_rows(up.model, up.tokenizer, openings[i],
                                            [(r.texts[i], r.finishes[i]) for r in runs])
        res = await engine.pool.run(forward_rows, up.model, rows, pad)
        for r, s, row, st, rr in zip(runs, scores, rows, starts, res):
            r.guide.append(s)
            ntok = len(row.ids) - st
            r.loglik.append(float(rr.logps[st:].sum()) / max(1, ntok))

    await asyncio.gather(*(per_prompt(i) for i in range(len(prompts))))
    return time.perf_counter() - t0


DUMP_NAMES = {"texts": "text", "finishes": "finish", "judge": "vader", "loglik": "loglik_per_token"}
FIELDS = ("texts", "finishes", "upstream_tokens", "upstream_calls", "scorer_tokens", "latency",
          "judge", "guide", "loglik")


async def run_shard(args, indices: list[int]) -> dict:
    """Every method over the openings `indices` in one process; plain data out."""
    from w2s.proxy.core.types import Prompt
    from w2s.proxy.engine import Engine

    openings = [OPENINGS[i] for i in indices]
    prompts = [Prompt.raw(o) for o in openings]
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    cfg = build_config(args.upstream_dtype, args.guide_dtype)
    engine = Engine(cfg)
    t0 = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - t0
    tag = f"[shard {args.worker_shard}] " if args.worker_shard else ""
    print(f"{tag}models loaded in {load_s:.1f} s; {len(indices)} openings x {len(methods)} methods", flush=True)
    runs = []
    try:
        for m in methods:
            r = await run_method(engine, m, prompts, args, indices)
            runs.append(r)
            n = len(indices)
            print(f"{tag}  {m.label():22s} {r.wall:7.1f} s  ({r.wall / n:.2f} s/answer, "
                  f"{sum(r.upstream_tokens) / n:.0f} upstream tokens/answer)", flush=True)
        eval_s = await evaluate(engine, runs, prompts, openings)
    finally:
        await engine.aclose()
    return {"indices": indices, "load_s": load_s, "eval_s": eval_s,
            "runs": {r.method.name: {"wall": r.wall, **{f: getattr(r, f) for f in FIELDS}} for r in runs}}


def merge(shards: list[dict], n: int) -> tuple[list[Run], float, float]:
    """Shards -> one Run per method in opening order; wall = sum of the workers' walls."""
    names = list(shards[0]["runs"])
    runs = []
    for name in names:
        r = Run(next(m for m in METHODS if m.name == name))
        slots: dict[int, dict] = {}
        for sh in shards:
            d = sh["runs"][name]
            r.wall += d["wall"]
            for j, gi in enumerate(sh["indices"]):
                slots[gi] = {f: d[f][j] for f in FIELDS}
        for gi in sorted(slots):
            for f in FIELDS:
                getattr(r, f).append(slots[gi][f])
        runs.append(r)
    return runs, max(sh["load_s"] for sh in shards), max(sh["eval_s"] for sh in shards)


async def main_async(args) -> None:
    t_all = time.perf_counter()
    if args.merge_shards:  # report on shards saved by earlier runs (--keep-shards)
        shards = [json.loads(Path(f).read_text()) for f in args.merge_shards]
        for k, v in shards[0].get("settings", {}).items():  # report the settings the shards ran with
            setattr(args, k, v)
        indices = sorted(i for sh in shards for i in sh["indices"])
        if len(indices) != len(set(indices)):
            raise SystemExit("the shards overlap: each opening may appear in one shard only")
        finish(args, shards, indices, time.perf_counter() - t_all)
        return
    n = args.prompts or (QUICK_PROMPTS if args.quick else len(OPENINGS))
    indices = list(range(args.offset, min(len(OPENINGS), args.offset + n)))
    if args.worker_shard:  # a child of --workers: one shard, JSON out
        i, k = (int(x) for x in args.worker_shard.split("/"))
        shard = await run_shard(args, indices[i::k])
        Path(args.worker_out).write_text(json.dumps(shard))
        return
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    if methods[0].name != "plain":
        raise SystemExit("the plain-sampling method is the baseline and must be included")
    if args.workers <= 1:
        shards = [await run_shard(args, indices)]
    else:
        shards = await run_workers(args, len(indices))
    if args.keep_shards:
        d = Path(args.keep_shards)
        d.mkdir(parents=True, exist_ok=True)
        for sh in shards:
            (d / f"shard-{sh['indices'][0]:03d}-{len(sh['indices'])}.json").write_text(json.dumps(shard_meta(sh, args)))
    finish(args, shards, indices, time.perf_counter() - t_all)


def shard_meta(shard: dict, args) -> dict:
    return {**shard, "settings": {k: getattr(args, k) for k in
                                  ("max_tokens", "temperature", "top_k", "seed", "upstream_dtype", "guide_dtype")}}


def finish(args, shards: list[dict], indices: list[int], total_s: float) -> None:
    runs, load_s, eval_s = merge(shards, len(indices))
    n = len(indices)
    contiguous = indices == list(range(indices[0], indices[0] + n))
    args.indices_desc = f"#{indices[0]}-#{indices[-1]}" if contiguous else f"{n} of bench/lib/openings.py"
    md = report(runs, args, n, load_s, eval_s, total_s)
    print(md)
    if args.dump:
        with open(args.dump, "w") as f:
            for j, gi in enumerate(indices):
                for r in runs:
                    rec = {DUMP_NAMES.get(fld, fld): getattr(r, fld)[j] for fld in FIELDS}
                    f.write(json.dumps({"index": gi, "opening": OPENINGS[gi], "method": r.method.name, **rec}) + "\n")
    if not args.no_write:
        path = write_result("sentiment", md, args.out, "_quick" if args.quick else "")
        print(f"\nwritten to {path}")


def worker_argv(argv: list[str]) -> list[str]:
    """This run's arguments without "--workers K": what each worker process gets."""
    if "--workers" in argv:
        j = argv.index("--workers")
        return argv[:j] + argv[j + 2:]
    return [a for a in argv if not a.startswith("--workers=")]


async def run_workers(args, n: int) -> list[dict]:
    """--workers K: K processes (one torch thread each), openings dealt round-robin. A worker that dies stops
    the others and is reported at once, with its stderr."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="w2s-sentiment-"))
    outs = [tmp / f"shard{i}.json" for i in range(args.workers)]
    workers = [Child(f"sentiment worker {i}", bench_cmd("sentiment", *worker_argv(args.argv), "--prompts", str(n),
                                                        "--worker-shard", f"{i}/{args.workers}", "--worker-out",
                                                        str(out)))
               for i, out in enumerate(outs)]
    try:
        await wait_all(workers)
    finally:
        for w in workers:
            w.stop()
    return [json.loads(out.read_text()) for out in outs]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PROMPTS} openings, {QUICK_MAX_TOKENS} tokens: a smoke test")
    p.add_argument("--prompts", type=int, help="number of openings (default: 12 with --quick, else all)")
    p.add_argument("--methods", nargs="*", choices=[m.name for m in METHODS], help="subset (plain is required)")
    p.add_argument("--max-tokens", type=int, help="upstream tokens per answer (default 50, --quick 24)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=50, help="the paper's code samples with top-k 50")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8, help="searches in flight (the scorer micro-batches them)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--upstream-dtype", default="float32")
    p.add_argument("--guide-dtype", default="float32")
    p.add_argument("--out", help="markdown file (default bench/results/sentiment/sentiment[_quick].md)")
    p.add_argument("--dump", help="also write every answer as JSONL here")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, one torch thread each, openings dealt round-robin (2 uses both cores)")
    p.add_argument("--offset", type=int, default=0, help="first opening (to extend an earlier run)")
    p.add_argument("--keep-shards", help="save the raw per-opening results (JSON) in this folder")
    p.add_argument("--merge-shards", nargs="+", help="no search: report on JSON files saved by --keep-shards")
    p.add_argument("--notes", help="a file of lines the report adds after its run-time note (provenance)")
    p.add_argument("--worker-shard", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    if args.quick and args.max_tokens is None:
        args.max_tokens = QUICK_MAX_TOKENS
    if args.max_tokens is None:
        args.max_tokens = 50
    set_threads(args.threads)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
