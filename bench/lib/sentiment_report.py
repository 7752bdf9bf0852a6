"""The controlled-sentiment bench's methods, its per-method results (Run) and its report (bench/sentiment.py): the
method table, the pairs at comparable upstream cost, and the notes that say what each column is."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.machine import machine, today
from bench.lib.results import kept_stamp, result_path
from bench.lib.stats import mean_se, paired_diff, per_item, share, win_rate
from bench.lib.tables import percent, pm, table


@dataclass
class Method:
    name: str
    w: int
    k: int
    l: int | None

    def label(self) -> str:
        if self.w * self.k == 1:
            return "plain sampling"
        if self.l is None:
            return f"BoN N={self.k}"
        return f"CBS W,K,L={self.w},{self.k},{self.l}"


METHODS = [Method("plain", 1, 1, None), Method("bon4", 1, 4, None), Method("bon16", 1, 16, None),
           Method("cbs2x2x10", 2, 2, 10), Method("cbs4x4x5", 4, 4, 5)]


@dataclass
class Run:
    method: Method
    texts: list[str] = field(default_factory=list)
    finishes: list[str] = field(default_factory=list)
    upstream_tokens: list[int] = field(default_factory=list)  # all candidates' tokens, per answer
    upstream_calls: list[int] = field(default_factory=list)
    scorer_tokens: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # per search
    wall: float = 0.0  # whole method, prompts concurrent
    judge: list[float] = field(default_factory=list)
    guide: list[float] = field(default_factory=list)
    loglik: list[float] = field(default_factory=list)  # per token, under the upstream


def method_rows(runs: list[Run], n: int) -> list[list[str]]:
    base = runs[0]
    rows = []
    for r in runs:
        rows.append([r.method.label(), pm(mean_se(r.judge)), percent(win_rate(r.judge, base.judge)) if r is not base
                     else "—", percent(share(r.judge, lambda j: j > 0.05)), pm(mean_se(r.guide), 2),
                     pm(mean_se(r.loglik), signed=False),
                     f"{per_item(sum(r.upstream_tokens), n):.0f}", f"{per_item(sum(r.upstream_calls), n):.1f}",
                     f"{per_item(sum(r.scorer_tokens), n):.0f}", f"{r.wall:.0f}", f"{per_item(r.wall, n):.2f}",
                     f"{per_item(sum(r.latency), n):.1f}"])
    return rows


COMPARISONS = [("bon4", "cbs2x2x10"), ("bon16", "cbs4x4x5"), ("plain", "bon4"), ("plain", "bon16")]


def comparison_rows(runs: list[Run]) -> list[list[str]]:
    """Pairs at comparable upstream cost, and each BoN against plain sampling, on the same openings."""
    by = {r.method.name: r for r in runs}
    rows = []
    for a, b in COMPARISONS:
        if a in by and b in by:
            ra, rb = by[a], by[b]
            rows.append([f"{rb.method.label()} vs {ra.method.label()}", percent(win_rate(rb.judge, ra.judge)),
                         pm(paired_diff(rb.judge, ra.judge)),
                         f"{sum(rb.upstream_tokens) / max(1, sum(ra.upstream_tokens)):.2f}"])
    return rows


NOTES = [
    "* win vs plain: share of openings where the method's continuation has a higher VADER score than plain "
    "sampling's on the same opening (ties count half). positive share: VADER compound > 0.05.",
    "* guide reward: log p_tuned(y|x) - log p_untuned(y|x) of the returned answer (EOS term when it stopped), "
    "what the search maximises.",
    "* upstream log-lik / token: log p_gemma(answer | opening) / answer tokens (EOS included when it stopped), "
    "computed with the upstream model itself; lower = further from the upstream's own distribution.",
    "* upstream tokens / answer: every token the upstream generated for the search (all candidates).",
    "* search s: the method's wall time, summed over worker processes; s / answer = search s / openings "
    "(one worker's time per answer); latency s / search: one search's own wall time, queueing included.",
]


def run_time_note(runs: list[Run], args, load_s: float, eval_s: float, total_s: float) -> str:
    searches = sum(r.wall for r in runs)
    if args.merge_shards:
        return (f"* Run time: merged from {len(args.merge_shards)} saved shard files; searches {searches:.0f} s "
                "(summed over workers).")
    return (f"* Run time: models {load_s:.0f} s, searches {searches:.0f} s (summed over workers), "
            f"evaluation {eval_s:.0f} s, total wall {total_s:.0f} s.")


def settings_line(args, n: int) -> str:
    return (f"{n} neutral movie-review openings (bench/lib/openings.py {args.indices_desc}), upstream Gemma 3 270M "
            f"base ({args.upstream_dtype}), guide SmolLM2-135M-Instruct prompted pair positive-critic vs "
            f"negative-critic ({args.guide_dtype}), judge VADER compound on the continuation only. max_tokens "
            f"{args.max_tokens}, T={args.temperature}, top-k {args.top_k}, seed {args.seed}, {args.workers} worker "
            f"process(es) with {args.threads} torch thread(s) each, {args.concurrency} searches in flight per worker. "
            "Methods run one after another; within a method the openings run concurrently.")


def report(runs: list[Run], args, n: int, load_s: float, eval_s: float, total_s: float) -> str:
    stamp = f"{today()}; {machine('cpu', 'CPU only, shared with other jobs (timings noisy)')}."
    if args.merge_shards:  # the data was measured when the shards were made: keep that run's stamp
        stamp = kept_stamp(Path(args.out) if args.out else result_path("sentiment"), stamp)
    notes = Path(args.notes).read_text().splitlines() if args.notes else []
    lines = [f"# Controlled sentiment (bench/sentiment.py{' --quick' if args.quick else ''})", "", stamp, "",
             settings_line(args, n), "", table(
                 ["method", "VADER compound (mean ± s.e.)", "win vs plain", "positive share", "guide reward",
                  "upstream log-lik / token", "upstream tokens / answer", "upstream calls / answer",
                  "scorer tokens / answer", "search s", "s / answer", "latency s / search"], method_rows(runs, n)),
             "", *NOTES, run_time_note(runs, args, load_s, eval_s, total_s), *notes, "",
             "Pairs at comparable upstream cost: BoN N=4 vs CBS 2,2,10 (4 rows), BoN N=16 vs CBS 4,4,5 (16 rows).", ""]
    pair_rows = comparison_rows(runs)
    if pair_rows:
        lines += [table(["comparison (same openings)", "win rate", "VADER difference (mean ± s.e.)",
                         "upstream token ratio"], pair_rows), ""]
    return "\n".join(lines)
