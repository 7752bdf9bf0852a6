"""Scorer cost of a mixture guide (bench/guide_mixture.py cost): 1, 2 and 3 parts on one SmolLM2.

Parts: the trained sentiment pair, + the trained plain-words pair (both adapters on the base, the base side
shared), + config.yaml's prompted pair positive-critic (two more sides: the base with each system prompt).
The workload is CBS-shaped: 16 candidates a round for 10 rounds, each round's candidate j extending its
text of the round before (the committed answers of an opening, cut at 10 growing lengths), so the KV reuse
of the prompt and of kept prefixes is exercised as in a search. Per setting: rows a candidate costs,
forward passes a round, and milliseconds per candidate (CPU time of this process, which other jobs on a shared
box do not inflate as they do wall time; and wall time), after one untimed warm-up, each setting run twice per
opening in the order A B C C B A (a drifting load cancels); the median of the runs. For comparison, the same parts as
separate pair sessions (no shared side, one submission each).
"""
from __future__ import annotations

import statistics
import time

ROUNDS, CANDIDATES = 10, 16
SETTINGS = {"1 part": ["sentiment"], "2 parts": ["sentiment", "plain"],
            "3 parts": ["sentiment", "plain", "positive-critic"]}


def with_mixtures(make_config):
    """The bench's config (make_config(extra_guides)) plus mixtures cost-1, cost-2, cost-3 (weights 1)."""
    return make_config({f"cost-{name[0]}": {"kind": "mixture", "parts": [{"guide": p} for p in parts]}
                        for name, parts in SETTINGS.items()})


def workload(i: int) -> list[list[str]]:
    """Round r's 16 candidate texts for opening i: committed answers cut at r/ROUNDS of their length."""
    from bench.lib import guide_pipeline as gp
    from bench.lib.results import experiment_dir

    texts = [a["text"] for exp in ("trained_guide", "plain_words", "guide_mixture")
             for name in ("answers.jsonl", "mix_answers.jsonl")
             for a in gp.read_jsonl(experiment_dir(exp) / name) if a["opening"] == i and a["text"]]
    texts = (texts * CANDIDATES)[:CANDIDATES]
    return [[t[: max(1, len(t) * r // ROUNDS)] for t in texts] for r in range(1, ROUNDS + 1)]


async def _run(sessions, rounds: list[list[str]], stats) -> tuple[float, float, int, int]:
    """(process CPU s, wall s, rows, passes) of scoring every round with every session."""
    from w2s.proxy.core.types import ScoreItem

    b0, r0, c0, t0 = stats.batches, stats.rows, time.process_time(), time.perf_counter()
    try:
        for texts in rounds:
            items = [ScoreItem(t, False) for t in texts]
            for s in sessions:
                await s.score(items)
    finally:
        for s in sessions:
            s.close()
    return time.process_time() - c0, time.perf_counter() - t0, stats.rows - r0, stats.batches - b0


async def _measure_async(make_config, openings: int) -> dict:
    from bench.lib.openings import OPENINGS
    from w2s.proxy.core.types import Prompt
    from w2s.proxy.engine import Engine
    from w2s.scorers.mixture import GuideMixture
    from w2s.scorers.pair import GuidePair

    cfg = with_mixtures(make_config)
    engine = Engine(cfg)
    await engine.start()
    out: dict = {}
    try:
        await _run([GuideMixture("warm-up", cfg.guides["cost-1"], engine.pool, engine.batcher).session(
            Prompt.raw(OPENINGS[0]))], workload(0)[:2], engine.batcher.stats)
        for i in range(openings):
            rounds = workload(i)
            for name, parts in [*SETTINGS.items(), *reversed(SETTINGS.items())]:
                prompt = Prompt.raw(OPENINGS[i])
                mix = GuideMixture(name, cfg.guides[f"cost-{name[0]}"], engine.pool, engine.batcher)
                out.setdefault((name, "mixture"), []).append(
                    await _run([mix.session(prompt)], rounds, engine.batcher.stats))
                pairs = [GuidePair(p, cfg.guides[p], engine.pool, engine.batcher).session(prompt) for p in parts]
                out.setdefault((name, "separate pairs"), []).append(
                    await _run(pairs, rounds, engine.batcher.stats))
    finally:
        await engine.aclose()
    return out


def rows_of(measured: dict) -> list[list]:
    """One row per (parts, how): rows a candidate, passes a round, ms a candidate (process CPU, wall)."""
    per = ROUNDS * CANDIDATES
    base = statistics.median(m[0] for m in measured[("1 part", "mixture")])
    rows = []
    for (name, how), runs in measured.items():
        busy = statistics.median(m[0] for m in runs)
        wall = statistics.median(m[1] for m in runs)
        rows.append([name, how, f"{runs[0][2] / per:.2f}", f"{runs[0][3] / ROUNDS:.1f}",
                     f"{1000 * busy / per:.1f}", f"{1000 * wall / per:.1f}", f"{busy / base:.2f}x"])
    return rows


def measure(make_config, openings: int) -> str:
    import asyncio

    from bench.lib.machine import machine, today
    from bench.lib.tables import table

    measured = asyncio.run(_measure_async(make_config, openings))
    return "\n".join([
        "# Scorer cost of a mixture guide (bench/guide_mixture.py cost)", "",
        f"{today()}; {machine()}.", "",
        (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip() + f" Openings 0-{openings - 1}.", "",
        table(["parts", "scored as", "rows / candidate", "forward passes / round", "ms / candidate (process CPU)",
               "ms / candidate (wall)", "CPU vs 1 part"], rows_of(measured)), "",
    ])
