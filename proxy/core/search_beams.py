"""A search's beams: one partial (or whole) answer each, and how a round's pool of them is numbered.

Pure, as proxy/core/search.py that uses them.
"""
from __future__ import annotations

from dataclasses import dataclass

from w2s.proxy.core.tools import ToolCall, answer_text
from w2s.proxy.core.types import FinishReason, ScoreItem


@dataclass
class Beam:
    text: str
    tokens: int  # upstream completion tokens on this path
    finished: bool = False
    finish_reason: FinishReason = "length"
    score: float | None = None
    stop_sequence: str | None = None
    parent: int | None = None  # index of the parent in the previous round's candidates
    index: int = -1  # index in this round's candidates (the trace's numbering)
    draws: int = 0  # continuations it gets next round, once kept (allocate); 0 and unfinished: pruned
    tool_calls: tuple[ToolCall, ...] = ()  # a whole answer that calls tools
    rejected: str | None = None  # why it cannot be returned (the request's output format)
    cut_at: int | None = None  # cut this many tokens into its chunk (reject_at): scored, never kept

    @property
    def key(self) -> tuple[str, bool, tuple[ToolCall, ...]]:
        return (self.text, self.finished, self.tool_calls)

    def score_item(self, eos_on_length: bool) -> ScoreItem:
        eos = self.finished and (self.finish_reason == "stop" or eos_on_length)
        return ScoreItem(answer_text(self.text, self.tool_calls), eos)  # a call is scored as text

    def finish(self, reason: FinishReason, stop_sequence: str | None = None) -> None:
        self.finished, self.finish_reason, self.stop_sequence = True, reason, stop_sequence


ROOT = Beam("", 0)
Draw = tuple[int | None, Beam]  # (parent's index in the last round, parent)


def distinct_pool(pool: list[Beam], distinct: bool = True) -> list[Beam]:
    """First occurrence of each (text, finished); numbers them as the trace will.

    With `distinct=False` every beam stays (numbered only): independent draws.
    """
    if distinct:
        seen: dict[tuple, Beam] = {}
        for b in pool:
            seen.setdefault(b.key, b)
        out = list(seen.values())
    else:
        out = list(pool)
    for i, b in enumerate(out):
        b.index = i
    return out


def committed_prefix(texts: list[str]) -> str:
    """The text every kept beam already agrees on: safe to stream."""
    if not texts:
        return ""
    lo, hi = min(texts), max(texts)  # the common prefix of the extremes is everyone's
    i = 0
    while i < len(lo) and i < len(hi) and lo[i] == hi[i]:
        i += 1
    return lo[:i]


def beam_score(b: Beam) -> float:
    return b.score if b.score is not None else 0.0


def by_score(beams: list[Beam]) -> list[Beam]:
    """Best first; a stable sort, so ties go to the earlier beam, as in the paper's topk."""
    return sorted(beams, key=lambda b: -beam_score(b))
