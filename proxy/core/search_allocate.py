"""The allocate step of a search round: how many continuations each kept beam gets next round.

CBS gives every kept unfinished beam k. The cheaper strategies give fewer: `k_tau` scales a beam's
draws down with its score gap to the best (never under `k_min`), and `decide_after` continues only
the leading beam(s) once the best has descended from the previous best that many rounds in a row.
A part of the search (proxy/core/search.py `_Search`), as a mixin over its state.
"""
from __future__ import annotations

import math

from w2s.proxy.core.search_beams import Beam, beam_score
from w2s.proxy.core.types import SearchParams, SearchResult


class AllocateSteps:
    params: SearchParams
    result: SearchResult
    kept: list[Beam]
    lead: int | None  # index of the best kept beam in the last round's candidates
    streak: int  # rounds in a row the best kept beam descended from the previous best
    decided: bool  # decide_after: only the leading beam(s) are continued from here on

    def allocate(self) -> None:
        """k per kept unfinished beam (CBS); fewer behind the best (k_tau); none but the leaders once decided."""
        p = self.params
        self.update_decided()
        best = beam_score(self.kept[0]) if self.kept else 0.0
        leaders = {id(b) for b in self.kept[: max(1, p.n)]}
        for b in self.kept:
            if b.finished or (self.decided and id(b) not in leaders):
                b.draws = 0
            elif p.k_tau is not None and not self.decided:
                gap = max(0.0, best - beam_score(b))
                b.draws = max(p.k_min, round(p.k * math.exp(-gap / p.k_tau)))
            else:
                b.draws = p.k

    def update_decided(self) -> None:
        """decide_after: the best kept beam descended from the last round's best that many rounds in a row."""
        lead = self.kept[0] if self.kept else None
        same = lead is not None and self.lead is not None and lead.parent == self.lead
        self.streak = self.streak + 1 if same else 0
        self.lead = lead.index if lead is not None else None
        after = self.params.decide_after
        if after is not None and self.streak >= after and not self.decided:
            self.decided = True
            self.result.note(f"decided in round {len(self.result.rounds)}: the best beam led {after} rounds "
                             "in a row, only it is continued (decide_after)")
