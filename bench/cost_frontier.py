"""What steering costs: quality against upstream tokens, for every search strategy, on the trained sentiment pair.

    HF_HUB_OFFLINE=1 python -m bench.cost_frontier search --openings 0-59 --workers 2   # resumable
    python -m bench.cost_frontier report --openings 0-59       # results/cost_frontier/cost_frontier.md + .png

Setup as bench/trained_guide.py: Gemma 3 270M base guided by the trained SmolLM2 pair (DPO LoRA of
bench/results/trained_guide/adapters/run3), evaluation openings 0-59, 50-token answers (max_tokens fixed),
T=0.7, top-k 50. Plain sampling, BoN-16 and CBS 4,4,5 (trained pair) are reused from
bench/results/trained_guide/answers.jsonl (same openings and seeds), labelled so. New rows: BoN-4, BoN-8,
CBS at two more (W, K, L), and each cheaper strategy (proxy/core/search.py: k_tau, decide_after, reject_at) at two settings.
The strategies run on CBS 4,4,5's settings *and seeds* (common random numbers: their round 0 is CBS 4,4,5's).

Every answer is appended to bench/results/cost_frontier/cost_frontier_answers.jsonl as it comes (fsync'd; a
rerun skips what is there) with its upstream calls, prompt / cached / completion tokens, wall seconds and its
log-likelihood per token under Gemma itself (the KL side). The report judges the text with VADER, TextBlob and
AFINN, and prices tokens at PRICES.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from bench.lib import guide_pipeline as gp
from bench.lib.frontier_plot import Point, plot_frontier
from bench.lib.machine import machine, today
from bench.lib.openings import OPENINGS
from bench.lib.procs import Child, bench_cmd, wait_all
from bench.lib.results import experiment_dir, kept_stamp
from bench.lib.stats import mean_se, paired_diff, per_item
from bench.lib.tables import pm, table

EXPERIMENT = "cost_frontier"
DIR = experiment_dir(EXPERIMENT)
ANSWERS = DIR / "cost_frontier_answers.jsonl"
REPORT = DIR / "cost_frontier.md"
PLOT = DIR / "cost_frontier.png"
TRAINED = gp.Store("trained_guide")
RUN = "run3"
GUIDE = "trained"
# A stated price (USD per million tokens; a small hosted model's list price, e.g. gpt-4.1-nano's). The local
# upstream reports no cached tokens, so every prompt token is billed at `input`.
PRICES = {"input": 0.10, "cached_input": 0.025, "output": 0.40}

# name -> (search options beyond max_tokens/T/top-k, seed index i as in gp.search_one: seed = i*10 + mi).
BASE = {"w": 4, "k": 4, "l": 5}
NEW = {  # in the order they run: the goal's candidate, its equal-cost baselines, then the rest
    "cbs4x4x5+k_tau=1+k_min=0": ({**BASE, "k_tau": 1.0, "k_min": 0}, 4),
    "cbs2x4x5": ({"w": 2, "k": 4, "l": 5}, 7),
    "bon8": ({"w": 1, "k": 8, "l": None}, 6),
    "cbs4x4x5+decide_after=1": ({**BASE, "decide_after": 1}, 4),
    "bon4": ({"w": 1, "k": 4, "l": None}, 5),
    "cbs4x4x5+k_tau=2": ({**BASE, "k_tau": 2.0}, 4),
    "cbs4x4x5+decide_after=2": ({**BASE, "decide_after": 2}, 4),
    "cbs2x2x5": ({"w": 2, "k": 2, "l": 5}, 8),
    # A control: CBS 4,4,5 itself, rerun here on its own seeds; it should give the reused row's answers.
    "cbs4x4x5-rerun": (BASE, 4),
    # Early rejection (proxy/core/search_early.py): every chunk's draws cut at a token checkpoint.
    "cbs4x4x5+reject_at=1": ({**BASE, "reject_at": 1}, 4),
    "cbs4x4x5+reject_at=2+reject_keep=6": ({**BASE, "reject_at": 2, "reject_keep": 6}, 4),
    # Both: early rejection until the lead has held for two rounds, then only the leader's k draws.
    "cbs4x4x5+decide_after=2+reject_at=2+reject_keep=6": ({**BASE, "decide_after": 2, "reject_at": 2,
                                                           "reject_keep": 6}, 4),
    "cbs4x4x5+decide_after=3+reject_at=2+reject_keep=6": ({**BASE, "decide_after": 3, "reject_at": 2,
                                                           "reject_keep": 6}, 4),
}
CONTROL = "cbs4x4x5-rerun"
STOPPED = {  # rows stopped before all openings, and why
    "cbs4x4x5+decide_after=3+reject_at=2+reject_keep=6": "stopped after 12 openings, already at 407 completion "
    "tokens an answer, over the goal's half of CBS 4,4,5's: the CPU went to the required rows.",
}
REUSED = {"plain": "none", "bon16": GUIDE, "cbs4x4x5": GUIDE}  # method -> guide in trained_guide/answers.jsonl
LABELS = {"plain": "plain sampling", "bon16": "BoN-16", "cbs4x4x5": "CBS 4,4,5", "bon8": "BoN-8", "bon4": "BoN-4",
          "cbs2x4x5": "CBS 2,4,5", "cbs2x2x5": "CBS 2,2,5",
          "cbs4x4x5-rerun": "CBS 4,4,5 rerun (control)"}


# --- search --------------------------------------------------------------------------------------


async def loglik(engine, i: int, text: str, finish: str) -> tuple[float, int]:
    """log p_Gemma(answer | opening) per token, and the answer's tokens."""
    from bench.lib.loglik import upstream_loglik_rows
    from w2s.scorers.rows import forward_rows

    up = engine.pool.get("gemma3-270m")
    rows, starts = upstream_loglik_rows(up.model, up.tokenizer, OPENINGS[i], [(text, finish)])
    res = await engine.pool.run(forward_rows, up.model, rows, up.tokenizer.pad_token_id or 0)
    n = len(rows[0].ids) - starts[0]
    return float(res[0].logps[starts[0]:].sum()) / max(1, n), n


async def search_one(engine, i: int, method: str) -> dict:
    from w2s.proxy.core.types import Prompt

    opts, mi = NEW[method]
    plan = engine.plan(gp.ROUTE_TRAINED, {**opts, "max_tokens": gp.MAX_TOKENS, "top_k": gp.TOP_K,
                                          "temperature": gp.TEMPERATURE, "seed": gp.SEED * 1_000 + i * 10 + mi})
    t0 = time.perf_counter()
    res = await engine.run(plan, Prompt.raw(OPENINGS[i]))
    seconds = time.perf_counter() - t0
    ll, n = await loglik(engine, i, res.best.text, res.best.finish_reason)
    return {"opening": i, "method": method, "guide": GUIDE, "text": res.best.text, "finish": res.best.finish_reason,
            "upstream_tokens": res.upstream_completion_tokens, "prompt_tokens": res.upstream_prompt_tokens,
            "cached_tokens": res.upstream_cached_tokens, "upstream_calls": res.upstream_calls,
            "rounds": len(res.rounds), "pruned": sum(c.pruned for rd in res.rounds for c in rd.candidates),
            "seconds": round(seconds, 2), "loglik_per_token": ll, "answer_tokens": n}


async def search_part(args) -> None:
    """Method by method (the strategies first), this worker's share of the openings; appended as they come."""
    from w2s.proxy.engine import Engine

    done = {gp.key(r) for r in gp.read_jsonl(ANSWERS)}
    mine = gp.openings_arg(args.openings)[args.part::args.workers]
    pairs = [(i, m) for m in args.methods.split(",") for i in mine] if args.order == "method" else \
        [(i, m) for i in mine for m in args.methods.split(",")]
    todo = [(i, m) for i, m in pairs if (i, m, GUIDE) not in done]
    engine = Engine(gp.guide_config(TRAINED.adapters / RUN))
    await engine.start()
    source = f"bench/cost_frontier.py, commit {gp.commit()}"
    try:
        await asyncio.gather(*(_searcher(engine, todo, source, args.concurrency) for _ in range(args.concurrency)))
    finally:
        await engine.aclose()


async def _searcher(engine, todo: list[tuple[int, str]], source: str, concurrency: int) -> None:
    """Takes the next (opening, method) until none is left: concurrent searches share the engine's merged
    generate calls and scorer passes (seeded per request: the same answers as one at a time)."""
    while todo:
        i, method = todo.pop(0)
        rec = await search_one(engine, i, method)
        gp.append(ANSWERS, rec | {"source": source, "concurrency": concurrency})
        print(f"w2s bench: opening {i} {method}: {rec['seconds']:.0f} s, {rec['upstream_tokens']} tokens",
              file=sys.stderr, flush=True)


def stage_search(args) -> None:
    if args.part is not None:
        asyncio.run(search_part(args))
        return
    workers = [Child(f"{EXPERIMENT} part {p}", bench_cmd(EXPERIMENT, "search", "--openings", args.openings,
                                                         "--workers", str(args.workers), "--part", str(p),
                                                         "--threads", str(args.threads), "--methods", args.methods,
                                                         "--order", args.order,
                                                         "--concurrency", str(args.concurrency)))
               for p in range(args.workers)]
    try:
        asyncio.run(wait_all(workers))
    except Exception as e:
        raise SystemExit(f"a search worker failed; rerun to resume. {e}") from e


# --- report --------------------------------------------------------------------------------------


def label(method: str) -> str:
    if method in LABELS:
        return LABELS[method] + (" (reused)" if method in REUSED else "")
    base, _, opt = method.partition("+")
    return f"{LABELS.get(base, base)} + {opt.replace('+', ', ').replace('=', ' = ')}"


def cbs_prompt_tokens(p: int, w: int, k: int, l: int, max_tokens: int) -> int:
    """Prompt tokens a CBS search sends on the local upstream when every chunk is l tokens (round r: w*k draws
    of prompt + r*l tokens, round 0 from the bare prompt): the reused rows did not record theirs."""
    rounds = -(-max_tokens // l)
    return sum(w * k * (p + r * l) for r in range(rounds))


def reused_rows(indices: list[int]) -> list[dict]:
    """The committed plain, BoN-16 and CBS 4,4,5 rows with their log-likelihoods; prompt tokens computed."""
    scores = {gp.key(s): s for s in gp.read_jsonl(TRAINED.scores)}
    tok = _gemma_tokenizer()
    out = []
    for a in gp.read_jsonl(TRAINED.answers):
        if a["opening"] not in indices or REUSED.get(a["method"]) != a["guide"]:
            continue
        s = scores.get(gp.key(a), {})
        p = len(tok(OPENINGS[a["opening"]])["input_ids"])
        prompt = {"plain": p, "bon16": 16 * p}.get(a["method"]) or cbs_prompt_tokens(p, 4, 4, 5, gp.MAX_TOKENS)
        out.append(a | {"prompt_tokens": prompt, "cached_tokens": 0,
                        "loglik_per_token": s.get("loglik_per_token"), "answer_tokens": s.get("answer_tokens")})
    return out


def _gemma_tokenizer():
    """The upstream's tokenizer, as the local provider counts prompt tokens."""
    from transformers import AutoTokenizer

    from w2s.proxy.runtime.loading import resolve_source

    where, gguf = resolve_source(gp.guide_config(TRAINED.adapters / RUN).models["gemma3-270m"].source)
    return AutoTokenizer.from_pretrained(str(where), gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(where)


class Data:
    """Every answer of the openings, by method; the openings where every method has one."""

    def __init__(self, spec: str):
        from bench.lib.judges import afinn_sum, textblob_polarity, vader_compound

        self.indices = gp.openings_arg(spec)
        rows = reused_rows(self.indices)
        rows += [a for a in gp.read_jsonl(ANSWERS) if a["opening"] in self.indices]
        self.by: dict[str, dict[int, dict]] = {}
        for a in rows:
            self.by.setdefault(a["method"], {})[a["opening"]] = a
        self.methods = [m for m in list(REUSED) + list(NEW) if m in self.by and m != CONTROL]
        self.complete = {m: sorted(self.by[m]) for m in self.methods}
        self.judges = {"VADER": vader_compound, "TextBlob": textblob_polarity, "AFINN": afinn_sum}
        # Each answer judged once, each method summed once: every table, line and panel asks again.
        self._judged: dict[tuple[str, str, int], float] = {}
        self.summaries: dict[str, dict] = {}

    def judged(self, m: str, judge: str, openings: list[int]) -> list[float]:
        for i in openings:
            if (m, judge, i) not in self._judged:
                self._judged[m, judge, i] = self.judges[judge](self.by[m][i]["text"])
        return [self._judged[m, judge, i] for i in openings]

    def field(self, m: str, f: str) -> list[float]:
        return [self.by[m][i][f] for i in self.complete[m] if self.by[m][i].get(f) is not None]


def control_line(d: Data) -> str:
    """The control: CBS 4,4,5 rerun by this script on its own seeds, against the reused row's answers."""
    rerun = d.by.get(CONTROL, {})
    if not rerun:
        return "Control (CBS 4,4,5 rerun here on its seeds): not run."
    same = sum(a["text"] == d.by["cbs4x4x5"][i]["text"] for i, a in rerun.items())
    return (f"Control: CBS 4,4,5 rerun by this script on its own seeds, openings {min(rerun)}-{max(rerun)}: {same} of "
            f"{len(rerun)} answers word for word the reused row's, so the strategies' paired differences are "
            "against the same search they would have run (their round 0 is its round 0).")


def cost_of(a: dict) -> float:
    from w2s.proxy.core.cost import Prices, Usage, cost_usd

    return cost_usd(Usage(a.get("upstream_calls", 0), a["prompt_tokens"], a.get("cached_tokens", 0), 0,
                          a["upstream_tokens"]), Prices(**PRICES))


def summary(d: Data, m: str) -> dict:
    if m not in d.summaries:
        d.summaries[m] = _summary(d, m)
    return d.summaries[m]


def _summary(d: Data, m: str) -> dict:
    n = len(d.complete[m])
    tot = {f: sum(d.field(m, f)) for f in ("upstream_tokens", "prompt_tokens", "upstream_calls", "seconds")}
    return {"n": n, **{f: per_item(v, n) for f, v in tot.items()},
            "cost": per_item(sum(cost_of(d.by[m][i]) for i in d.complete[m]), n),
            "loglik": mean_se(d.field(m, "loglik_per_token")), "length": per_item(sum(d.field(m, "answer_tokens")), n),
            **{j: mean_se(d.judged(m, j, d.complete[m])) for j in d.judges}}


def frontier_rows(d: Data) -> list[list[str]]:
    plain = summary(d, "plain")["upstream_tokens"] if "plain" in d.by else None
    rows = []
    for m in d.methods:
        s = summary(d, m)
        formula = "≈" if m in REUSED else ""
        rows.append([label(m), s["n"], pm(s["VADER"]), pm(s["TextBlob"]), pm(s["AFINN"], 2),
                     f"{s['upstream_tokens']:.0f}", f"{formula}{s['prompt_tokens']:.0f}", f"{s['upstream_calls']:.1f}",
                     f"{s['cost'] * 1e6:.0f}", f"{s['seconds']:.1f}", pm(s["loglik"]), f"{s['length']:.1f}",
                     f"{s['upstream_tokens'] / plain:.1f}x" if plain else "—"])
    return rows


def paired_rows(d: Data, ref: str = "cbs4x4x5") -> list[list[str]]:
    rows = []
    for m in d.methods:
        if m == ref or ref not in d.by:
            continue
        both = [i for i in d.complete[m] if i in d.by[ref]]
        cells = [label(m), len(both)]
        for j in d.judges:
            a, b = d.judged(m, j, both), d.judged(ref, j, both)
            mu, se = paired_diff(a, b)
            cells.append(f"{pm((mu, se), 3 if j != 'AFINN' else 2)}{' *' if abs(mu) > 2 * se and se > 0 else ''}")
        tok = per_item(sum(d.by[m][i]["upstream_tokens"] for i in both), len(both))
        ref_tok = per_item(sum(d.by[ref][i]["upstream_tokens"] for i in both), len(both))
        cells.append(f"{tok / ref_tok:.2f}")
        rows.append(cells)
    return rows


def goal_line(d: Data, ref: str = "cbs4x4x5") -> str:
    """The issue's goal: <= half of CBS 4,4,5's completion tokens, paired VADER diff >= -0.02 and not
    significantly worse (2 s.e.) on TextBlob or AFINN, on openings 0-59. Rows with fewer openings are judged
    on the ones they have, and said so: the goal counts as reached only on all of them."""
    if ref not in d.by:
        return "CBS 4,4,5 rows missing: goal not evaluated."
    ref_tok = per_item(sum(d.field(ref, "upstream_tokens")), len(d.complete[ref]))
    lines, best = [], None
    for m in d.methods:
        if m in REUSED:
            continue
        both = d.complete[m]
        tok = per_item(sum(d.by[m][i]["upstream_tokens"] for i in both), len(both))
        dv = paired_diff(d.judged(m, "VADER", both), d.judged(ref, "VADER", both))
        worse = [j for j in ("TextBlob", "AFINN") if _sig_worse(d, m, ref, j, both)]
        ok = tok <= ref_tok / 2 and dv[0] >= -0.02 and not worse
        full = len(both) == len(d.indices)
        verdict = ("meets it" if full else f"meets it on the {len(both)} openings it has (not all "
                   f"{len(d.indices)}: not reached)") if ok else "does not meet it"
        why = [] if ok else ([f"{tok:.1f} tokens > {ref_tok / 2:.1f}"] * (tok > ref_tok / 2)
                             + [f"VADER {dv[0]:+.3f}"] * (dv[0] < -0.02) + [f"worse on {', '.join(worse)}"] * bool(worse))
        lines.append(f"- {label(m)}: {tok:.0f} tokens, paired VADER {dv[0]:+.3f} ± {dv[1]:.3f} on {len(both)} "
                     f"openings: {verdict}" + (f" ({'; '.join(why)})" if why else ""))
        vader = mean_se(d.judged(m, "VADER", both))[0]
        if tok <= 400 and (best is None or vader > best[1]):
            best = (label(m), vader, tok, len(both))
    head = (f"The goal: ≤ {ref_tok / 2:.1f} completion tokens (half of CBS 4,4,5's {ref_tok:.1f}), a paired VADER "
            "difference from CBS 4,4,5 of at least −0.02, and not worse by 2 s.e. on TextBlob or AFINN, on openings "
            f"{d.indices[0]}-{d.indices[-1]}.")
    tail = (f"Best new point at ≤ 400 completion tokens: {best[0]}, VADER {best[1]:+.3f} at {best[2]:.0f} tokens "
            f"({best[3]} openings)." if best else "")
    return "\n".join([head, "", *lines, "", tail])


def _sig_worse(d: Data, m: str, ref: str, judge: str, both: list[int]) -> bool:
    mu, se = paired_diff(d.judged(m, judge, both), d.judged(ref, judge, both))
    return mu < 0 and abs(mu) > 2 * se


def plot(d: Data) -> None:
    points = [Point(m, label(m) + (f" ({s['n']} openings)" if s["n"] < len(d.indices) else ""),
                    s["upstream_tokens"], {j: s[j] for j in d.judges})
              for m in d.methods for s in [summary(d, m)]]
    plot_frontier(points, list(d.judges), summary(d, "cbs4x4x5")["upstream_tokens"] / 2, "half of CBS 4,4,5's",
                  "Cost/quality frontier: Gemma 3 270M guided by the trained SmolLM2 pair, 50-token answers", PLOT)


def report(args) -> str:
    d = Data(args.openings)
    missing = {m: len(d.indices) - len(d.complete.get(m, [])) for m in list(REUSED) + list(NEW) if m != CONTROL}
    missing_line = ", ".join(f"{label(m)}: {k} missing" for m, k in missing.items() if k) or "none"
    plot(d)
    return "\n".join([
        "# What steering costs: the cost/quality frontier (bench/cost_frontier.py)", "",
        kept_stamp(REPORT, f"{today()}; {machine()}."), "",
        f"Openings {args.openings} of bench/lib/openings.py; Gemma 3 270M base guided by the trained SmolLM2 pair "
        f"(bench/results/trained_guide/adapters/{RUN}); {gp.MAX_TOKENS}-token answers (max_tokens fixed), "
        f"T={gp.TEMPERATURE}, top-k {gp.TOP_K}. Rows marked reused are bench/results/trained_guide/answers.jsonl's "
        "(same openings and seeds; their prompt tokens, ≈, computed as the local upstream counts them, since they "
        f"were not recorded). New answers: {ANSWERS.relative_to(DIR.parents[2])}. Rows missing answers: "
        f"{missing_line}. Price stated: USD {PRICES['input']} / {PRICES['cached_input']} / {PRICES['output']} per "
        "million input / cached input / output tokens; cost in micro-USD per answer. Steering multiplier: "
        "completion tokens over plain sampling's. Wall seconds are not comparable between reused and new rows: the "
        "new ones ran niced, two to four at a time, beside other jobs on 2 shared cores; prompt tokens and calls are "
        "what any upstream would bill.", *([""] + [f"{label(m)}: {why}" for m, why in STOPPED.items()] if STOPPED
                                            else []), "",
        control_line(d), "",
        f"![frontier]({PLOT.name})", "",
        table(["method", "answers", "VADER", "TextBlob", "AFINN", "completion tok / answer", "prompt tok / answer",
               "calls / answer", "µUSD / answer", "wall s / answer", "upstream log-lik / token",
               "mean answer length (tokens)", "steering multiplier"], frontier_rows(d)), "",
        "## Paired against CBS 4,4,5 (same openings)", "",
        "Differences are method minus CBS 4,4,5 (mean ± s.e.); * marks more than 2 s.e. from zero.", "",
        table(["method", "openings", "VADER diff", "TextBlob diff", "AFINN diff", "tokens / CBS 4,4,5's"],
              paired_rows(d)), "",
        goal_line(d), "",
    ])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["search", "report"])
    ap.add_argument("--openings", default="0-59")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=1,
                    help="searches at once in each worker (wall seconds per answer then overlap)")
    ap.add_argument("--part", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(NEW), help="comma-separated, in order")
    ap.add_argument("--order", choices=["opening", "method"], default="opening",
                    help="opening: every method of an opening before the next (complete openings first)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.stage == "search":
        stage_search(args)
        return
    text = report(args)
    print(text)
    REPORT.write_text(text)
    print(f"written to {REPORT.relative_to(DIR.parents[2])}", file=sys.stderr)


if __name__ == "__main__":
    main()
