"""How a guide trained on whole answers ranks partial ones, and what a candidate costs it to score.

Committed CBS answers are cut at the search's chunk boundaries (every `l` upstream tokens, the
upstream's own tokenizer): the prefixes are the nodes a CBS trace went through on its way to the
answer (a stand-in for full traces, which are not committed). Each prefix is scored as unfinished and
the whole answer as it ended (EOS closing it when it stopped). Per depth d, the Spearman rank
correlation across answers of score(prefix_d) with score(whole answer) says how far the partial
ranking the search acts on agrees with the ranking of the answers it ends with.

The same candidates are scored under each guide alone, timed in the model thread (the batcher's
forward-pass seconds): the scorer's cost per candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.lib.openings import OPENINGS


@dataclass
class GuideRun:
    """One guide's scores over every answer's prefixes, and what computing them cost."""

    partial: list[list[float]] = field(default_factory=list)  # per answer: its prefixes' scores, by depth
    whole: list[float] = field(default_factory=list)  # per answer
    candidates: int = 0
    seconds: float = 0.0
    rows: int = 0
    tokens: int = 0


def prefixes(tokenizer, text: str, chunk: int) -> list[str]:
    """The answer's text after each whole chunk of `chunk` upstream tokens, the last (whole) one excluded."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[:n]) for n in range(chunk, len(ids), chunk)]


async def score_guide(engine, guide: str, answers: list[dict], chunk: int) -> GuideRun:
    """Every answer's prefixes (unfinished) and the whole answer under `guide`, one session per answer."""
    from w2s.proxy.core.types import Prompt, ScoreItem

    tok = engine.pool.get("gemma3-270m").tokenizer
    run, st = GuideRun(), engine.batcher.stats
    s0, r0, t0 = st.seconds, st.rows, st.tokens
    for a in answers:
        parts = prefixes(tok, a["text"], chunk)
        items = [ScoreItem(p, False) for p in parts] + [ScoreItem(a["text"], a["finish"] == "stop")]
        session = engine.guides[guide].session(Prompt.raw(OPENINGS[a["opening"]]))
        try:
            scores = await session.score(items)
        finally:
            session.close()
        run.partial.append(scores[:-1])
        run.whole.append(scores[-1])
        run.candidates += len(items)
    run.seconds, run.rows, run.tokens = st.seconds - s0, st.rows - r0, st.tokens - t0
    return run


def spearman_by_depth(run: GuideRun, chunk: int) -> list[tuple[int, int, float]]:
    """(depth in upstream tokens, answers reaching it, Spearman rho of partial with whole) per depth.
    An answer shorter than a depth has no prefix there: each depth pairs the answers that reach it."""
    from scipy.stats import spearmanr

    out = []
    for d in range(1, max(map(len, run.partial), default=0) + 1):
        reach = [j for j, p in enumerate(run.partial) if len(p) >= d]
        xs, ys = [run.partial[j][d - 1] for j in reach], [run.whole[j] for j in reach]
        rho = float(spearmanr(xs, ys).statistic) if len(reach) >= 3 else math.nan
        out.append((d * chunk, len(reach), rho))
    return out
