"""A second, non-sentiment preference: plain words, trained end to end and judged by code it never saw.

    HF_HUB_OFFLINE=1 python -m bench.plain_words prefs  --data DIR            # 1. preference pairs
    HF_HUB_OFFLINE=1 python -m bench.plain_words train  --data DIR --run NAME  # 2. DPO (w2s train-guide)
    HF_HUB_OFFLINE=1 python -m bench.plain_words search --data DIR --run NAME --openings 0-29 --workers 2
    HF_HUB_OFFLINE=1 python -m bench.plain_words score  --run NAME --openings 0-29
    python -m bench.plain_words report --openings 0-29           # results/plain_words/plain_words.md

The pipeline of bench/trained_guide.py with another gold reward: Flesch reading ease (bench/lib/judges.py's
own code: short sentences of short words). SmolLM2 continues the first 160 training openings 8 times each;
`w2s make-prefs` keeps best against worst above a margin of 10 points; `w2s train-guide` DPO-trains a
LoRA. Gemma 3 270M base is then guided on evaluation openings (BoN-16 and CBS 4,4,5, the seeds of
bench/sentiment.py) by that pair and by a prompted pair that states the same preference in words; plain
sampling is reused from bench/results/trained_guide/answers.jsonl. Every answer is scored under both pairs.
Evaluation openings 0-29, fixed before any result was seen (what the session's time allowed at ~210 s an
opening for the four guided searches, two openings at a time on 2 cores).

The held-out judges are textstat's (a dependency of the bench extra, not of the training signal):
its Flesch reading ease (the same formula, its own syllable counter and sentence split) and its
Dale-Chall score (a list of 3,000 familiar words; no syllables at all). Every answer is in
bench/results/plain_words/answers.jsonl, one line each, to re-judge.
"""
from __future__ import annotations

import asyncio
import sys

from bench.lib import guide_pipeline as gp
from bench.lib.machine import machine, today
from bench.lib.results import kept_stamp
from bench.lib.stats import mean_se, paired_diff, per_item, win_rate
from bench.lib.tables import percent, pm, table

STORE = gp.Store("plain_words")
SENTIMENT = gp.Store("trained_guide")  # plain sampling's answers come from there
PREFS_SECONDS = STORE.dir / "prefs_seconds.txt"
TRAIN_OPENINGS_USED, N_PER_OPENING, MARGIN = 160, 8, 10.0
# The same preference stated in words, no training: the prompted pair to beat.
ROUTE_PROMPTED = "w2s-plainwords-prompted"
PROMPTED = ("plainwords-prompted", {"beta": 1.0, "tuned": {
    "model": "smollm2", "system": "You are a film critic who writes in plain, simple words and short sentences."},
    "untuned": {"model": "smollm2", "system": "You are a film critic who writes long, ornate sentences full of "
                                              "elaborate, academic vocabulary."}})
ROUTES = {"trained": gp.ROUTE_TRAINED, "prompted": ROUTE_PROMPTED}
LABELS = {("plain", "none"): "plain sampling",
          ("bon16", "prompted"): "BoN-16, prompted pair", ("bon16", "trained"): "BoN-16, trained pair",
          ("cbs4x4x5", "prompted"): "CBS 4,4,5, prompted pair", ("cbs4x4x5", "trained"): "CBS 4,4,5, trained pair"}


def eval_config(run: str):
    return gp.guide_config(STORE.adapters / run, {ROUTE_PROMPTED: PROMPTED})


def stage_prefs(args) -> None:
    from bench.lib.train_openings import TRAIN_OPENINGS

    seconds = gp.make_prefs(args, STORE.prefs, "bench.lib.judges:flesch_ease", TRAIN_OPENINGS[:TRAIN_OPENINGS_USED],
                            N_PER_OPENING, MARGIN)
    if seconds is not None:
        PREFS_SECONDS.write_text(f"{seconds:.0f}\n")


def stage_train(args) -> None:
    gp.train(args, STORE.prefs, STORE.runs, STORE.adapters)


def import_plain(indices: list[int]) -> None:
    """Plain sampling's answers, as bench/trained_guide.py imported them from the sentiment shards."""
    done = {gp.key(r) for r in gp.read_jsonl(STORE.answers)}
    for a in gp.read_jsonl(SENTIMENT.answers):
        if a["guide"] == "none" and a["opening"] in indices and gp.key(a) not in done:
            gp.append(STORE.answers, a)


def stage_search(args) -> None:
    import_plain(gp.openings_arg(args.openings))
    if args.part is not None:
        routes = {g: ROUTES[g] for g in args.guides.split(",")}
        asyncio.run(gp.search_part(args, args.part, eval_config(args.run), STORE.answers, routes,
                                   "bench/plain_words.py"))
    else:
        gp.spawn_search_workers("plain_words", args, "--guides", args.guides)


async def stage_score_async(args) -> None:
    from bench.lib.judges import flesch_ease, textstat_dale_chall, textstat_flesch

    await gp.score_all(args, eval_config(args.run), STORE.answers, STORE.scores,
                       {"reward_trained": "trained", "reward_prompted": PROMPTED[0]},
                       {"flesch": flesch_ease, "textstat_flesch": textstat_flesch, "dale_chall": textstat_dale_chall})


# --- report --------------------------------------------------------------------------------------

JUDGES = (("flesch", 1), ("textstat_flesch", 1), ("dale_chall", -1))  # field, sign (+1: higher = plainer)
FIELDS = ("flesch", "textstat_flesch", "dale_chall", "reward_trained", "reward_prompted", "loglik_per_token")


def _paired(label: str, a: dict, b: dict) -> list[str]:
    """Win rate and mean difference a - b under each judge (Dale-Chall: lower wins)."""
    row = [label]
    for f, sign in JUDGES:
        row += [percent(win_rate(a[f], b[f], sign)), pm(paired_diff(a[f], b[f]), 2)]
    return row


def _tables(sc: dict, ans: dict, complete: list[int]) -> tuple[list, list]:
    cols = {mg: {f: [sc[(i, *mg)][f] for i in complete] for f in FIELDS} for mg in LABELS}
    rows = [[label] + [pm(mean_se(cols[mg][f]), 2) for f in FIELDS]
            + [f"{per_item(sum(ans[(i, *mg)]['upstream_tokens'] for i in complete), max(1, len(complete))):.0f}"]
            for mg, label in LABELS.items()]
    pairs = [_paired(f"{label} vs plain sampling", cols[mg], cols[("plain", "none")])
             for mg, label in LABELS.items() if mg[1] != "none"]
    pairs += [_paired(f"{LABELS[(m, 'trained')]} vs {LABELS[(m, 'prompted')]}", cols[(m, "trained")],
                      cols[(m, "prompted")]) for m in ("bon16", "cbs4x4x5")]
    return rows, pairs


ABORTED_RUNS = [["run1, first start (aborted)", "2 of 40", 8, 0.0005, 0.1, "144 / 16",
                 "— (stopped before its first evaluation)",
                 "~50 s a step at 1 thread beside the test suite; killed, then run1 again from scratch at 2 threads"]]


def _run_rows() -> list[list]:
    def row(r: dict) -> list:
        s = r["identity"]["settings"]
        return [r["name"], r.get("steps", "—"), s["batch_size"], s["learning_rate"], s["beta"],
                f"{r.get('train_pairs', '—')} / {r.get('held_out_pairs', '—')}",
                f"{r['best']['accuracy']:.3f} at step {r['best']['step']}" if "best" in r else "—",
                f"{r['seconds_this_run'] / 60:.0f} min" if "seconds_this_run" in r else "—"]

    return [row(r) for r in gp.training_runs(STORE.runs)] + ABORTED_RUNS


def _cost_line(ans: dict) -> str:
    searched = {g: sum(a["seconds"] for a in ans.values() if a["guide"] == g) / 60 for g in ROUTES}
    prefs_min = f"{int(PREFS_SECONDS.read_text()) / 60:.0f} min" if PREFS_SECONDS.exists() else "—"
    return (f"Cost: preference pairs {prefs_min} ({len(gp.read_jsonl(STORE.prefs))} pairs from {TRAIN_OPENINGS_USED} x "
            f"{N_PER_OPENING} SmolLM2 answers); searches {searched['trained']:.0f} min (trained) and "
            f"{searched['prompted']:.0f} min (prompted) summed over searches, two at a time on 2 cores.")


def report(args) -> str:
    indices = gp.openings_arg(args.openings)
    ans = {gp.key(a): a for a in gp.read_jsonl(STORE.answers) if a["opening"] in indices}
    sc = {gp.key(s): s for s in gp.read_jsonl(STORE.scores) if s["opening"] in indices}
    complete = gp.complete_openings(indices, sc, LABELS)
    rows, pairs = _tables(sc, ans, complete)
    return "\n".join([
        "# A second preference: plain words (bench/plain_words.py)", "",
        kept_stamp(STORE.report, f"{today()}; {machine()}."), "",
        f"Evaluation openings {args.openings} of bench/lib/openings.py ({len(complete)} complete of {len(indices)}). "
        "Upstream Gemma 3 270M base; guides SmolLM2-135M-Instruct: the pair DPO-trained on Flesch reading ease "
        "(bench/lib/judges.py's own code; higher = plainer) and a prompted pair (plain, simple words vs long, ornate "
        f"academic sentences). {gp.MAX_TOKENS} tokens, T={gp.TEMPERATURE}, top-k {gp.TOP_K}, seeds as "
        f"bench/sentiment.py; plain sampling reused from {STORE.rel(SENTIMENT.answers)} (commit "
        f"{gp.SHARD_COMMIT}). Held-out judges: textstat's Flesch (the same formula, other code) and its Dale-Chall "
        "score (lower = plainer; a familiar-word list, no syllables). Every answer is in "
        f"{STORE.rel(STORE.answers)}.", "",
        table(["method", "Flesch (training judge)", "Flesch (textstat)", "Dale-Chall (textstat; lower = plainer)",
               "reward under trained pair", "reward under prompted pair", "upstream log-lik / token",
               "upstream tokens / answer"], rows), "",
        table(["paired, same openings", "win, Flesch (training)", "difference", "win, Flesch (textstat)",
               "difference", "win, Dale-Chall", "difference"], pairs), "",
        _cost_line(ans), "",
        "## Training runs", "",
        "Every run made, the aborted first start included.", "",
        table(["run", "steps", "batch", "lr", "DPO beta", "train / held-out pairs", "best held-out reward accuracy",
               "time"], _run_rows()), "",
    ])


def parser():
    ap = gp.parser(__doc__, data="/tmp/w2s-plain-words", run="run1", max_steps=40, openings="0-29")
    ap.add_argument("--guides", default="trained,prompted", help="which pairs search: trained, prompted or both")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = gp.parse(parser(), argv)
    if args.stage == "report":
        text = report(args)
        print(text)
        STORE.report.write_text(text)
        print(f"written to {STORE.rel(STORE.report)}", file=sys.stderr)
        return
    stage = {"prefs": stage_prefs, "train": stage_train, "search": stage_search}.get(args.stage)
    stage(args) if stage else asyncio.run(stage_score_async(args))


if __name__ == "__main__":
    main()
