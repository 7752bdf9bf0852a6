"""`w2s make-prefs`' two files: the samples log, and the preference pairs built from it.

The samples log (OUT.samples.jsonl) is the resumable part: one line per prompt,
appended and fsync'd as soon as its answers are sampled and judged (the batch
output machinery of proxy/batch/output.py, with its own record shape):

    {"custom_id": "p1", "line": 1, "prompt": "..." | [messages], "route": "...", "judge": "mod:fn",
     "answers": [{"text": "...", "score": 0.8}, ...]}

The pairs file is rebuilt from it at the end of every run, in one atomic step:
for each prompt, the best and the worst answer, kept when their scores differ
by more than the margin, in the common preference format (what `w2s
train-guide` reads):

    {"id": "p1", "prompt": ..., "chosen": ..., "rejected": ..., "chosen_score": 0.8, "rejected_score": -0.4}
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.proxy.batch.output import read_records, write_atomic


def sample_identity(rec: Any) -> tuple[str, bool] | None:
    """(custom_id, True) for a samples-log record, None for anything else."""
    if not isinstance(rec, dict) or not isinstance(rec.get("custom_id"), str):
        return None
    answers = rec.get("answers")
    if not isinstance(answers, list) or not all(
            isinstance(a, dict) and isinstance(a.get("text"), str) and isinstance(a.get("score"), (int, float))
            for a in answers):
        return None
    return rec["custom_id"], True


@dataclass
class PairStats:
    pairs: int = 0
    below_margin: int = 0  # best - worst <= margin
    too_few: int = 0  # fewer than 2 distinct answers
    not_sampled: int = 0  # prompts of the input with no samples yet (failed, or interrupted)


def pair_of(rec: dict, margin: float) -> tuple[dict | None, str]:
    """The best and the worst distinct answer as a preference line, or (None, why not)."""
    best: dict[str, float] = {}
    for a in rec["answers"]:  # the same text twice: one answer (its best score)
        best[a["text"]] = max(a["score"], best.get(a["text"], float("-inf")))
    if len(best) < 2:
        return None, "too_few"
    ranked = sorted(best.items(), key=lambda kv: kv[1])
    (worst, lo), (top, hi) = ranked[0], ranked[-1]
    if hi - lo <= margin:
        return None, "below_margin"
    chat = isinstance(rec["prompt"], list)
    answer = (lambda t: [{"role": "assistant", "content": t}]) if chat else (lambda t: t)
    return {"id": rec["custom_id"], "prompt": rec["prompt"], "chosen": answer(top), "rejected": answer(worst),
            "chosen_score": hi, "rejected_score": lo}, "pair"


def rebuild_pairs(samples: Path, out: Path, ids: list[str], margin: float) -> PairStats:
    """Write `out` from the samples log, in the input's order (`ids`)."""
    records = read_records(samples, sample_identity)
    st = PairStats()
    lines = []
    for cid in ids:
        rec = records.get(cid)
        if rec is None:
            st.not_sampled += 1
            continue
        pair, why = pair_of(rec, margin)
        if pair is None:
            setattr(st, why, getattr(st, why) + 1)
            continue
        st.pairs += 1
        lines.append(json.dumps(pair, ensure_ascii=False))
    write_atomic(out, "".join(line + "\n" for line in lines).encode())
    return st
