"""A search trace as a readable table (for `w2s generate --trace`)."""
from __future__ import annotations

from proxy.types import SearchResult


def format_trace(result: SearchResult, width: int = 70) -> str:
    lines = [f"{'round':>5} {'cand':>4} {'parent':>6} {'score':>8} {'kept':>4} {'done':>4}  text", "-" * (40 + width)]
    for rd in result.rounds:
        order = sorted(range(len(rd.candidates)), key=lambda i: -(rd.candidates[i].score or 0.0))
        for i in order:
            c = rd.candidates[i]
            text = c.text.replace("\n", "\\n")
            if len(text) > width:
                text = "…" + text[-(width - 1):]  # the end is what this round added
            score = f"{c.score:8.3f}" if c.score is not None else f"{'-':>8}"
            parent = "-" if c.parent is None else str(c.parent)
            lines.append(f"{rd.index:>5} {i:>4} {parent:>6} {score} {'*' if c.kept else '':>4} "
                         f"{'yes' if c.finished else '':>4}  {text}")
        extra = f", {rd.failed_chunks} failed" if rd.failed_chunks else ""
        lines.append(f"      round {rd.index}: {rd.upstream_completion_tokens} upstream tokens, {rd.scorer_tokens} scorer tokens, "
                     f"sample {rd.sample_seconds:.2f}s, score {rd.score_seconds:.2f}s{extra}")
    return "\n".join(lines)
