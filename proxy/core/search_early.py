"""Early rejection at a token checkpoint (`reject_at`, `reject_keep`): the cheaper round.

A CBS round draws a whole chunk of `l` tokens for every draw and throws most of them away. With
`reject_at: c` a round draws the first `c` tokens of every chunk, scores those partial answers (whole, as
always), and only the top `reject_keep` (default: the beam width) are drawn on to the chunk's end; the others
are cut there, having cost `c` tokens instead of `l` (speculative rejection, CARDS' early rejection of
segments). The cut draws stay in the round's candidates, marked with the token they were cut at, so the trace
and the page show them; they are never kept.

On an upstream that streams, cancelling a stream at token `c` would do the same; drawing the chunk in two
calls does it on every exact upstream (the local one included) and is exact about what it spent. The second
call re-sends the prompt and the partial answer, so it shows as more calls and prompt tokens, which an
automatic prefix cache mostly serves.

A part of the search (proxy/core/search.py `_Search`), as a mixin over its state.
"""
from __future__ import annotations

from dataclasses import replace

from w2s.proxy.core.search_beams import Beam, Draw, by_score, distinct_pool
from w2s.proxy.core.search_budget import Spent
from w2s.proxy.core.types import SampleResult, SearchParams

EARLY_SEED_OFFSET = 500_000  # the second call of round r draws with seed * SEED_STRIDE + EARLY_SEED_OFFSET + r


class EarlySteps:
    params: SearchParams
    exact: bool
    whole: bool
    width: int

    def early_at(self) -> int | None:
        """Tokens into a chunk where this round's draws are scored and cut; None: whole chunks (CBS)."""
        # SearchParams.validate holds reject_at in [1, l): only whole answers or a non-exact upstream turn it off.
        return None if not self.exact or self.whole else self.params.reject_at

    async def draw_early(self, draws: list[Draw], index: int, at: int
                         ) -> tuple[list[Beam], SampleResult, Spent, int]:
        """Both calls of an early-rejecting round, each accounted as it returns -> its children (survivors
        drawn to the chunk's end, then the cut partials), what was sampled and spent by both, scorer tokens."""
        first, spent = await self.draw(draws, index, chunk=at)
        self.account(first, spent)
        partials = self.expand(draws, first.chunks, first.exact)
        if not first.exact or not partials:
            return partials, first, spent, 0  # not a continuation any more (or nothing came): no second call
        survivors, cut, scorer_tokens = await self.cut(partials, at)
        on = [(b.parent, b) for b in survivors if not b.finished]
        if not on or self.budget_spent():  # the budget ran out at the checkpoint: the partials are the round's
            return survivors + cut, first, spent, scorer_tokens
        second, more = await self.draw(on, index, chunk=self.params.l - at, seed_offset=EARLY_SEED_OFFSET)
        self.account(second, more)
        self.last_draws = len(draws) + len(on)
        drawn_on = []
        for (pidx, partial), chunk in zip(on, second.chunks):
            # A lost second call keeps its partial answer: a beam the next round continues.
            drawn_on.append(partial if chunk.error is not None else self.child(pidx, partial, chunk))
        sampled = SampleResult(first.chunks + second.chunks, first.calls + second.calls,
                               first.exact and second.exact, tuple(dict.fromkeys(first.notes + second.notes)))
        return [b for b in survivors if b.finished] + drawn_on + cut, sampled, spent.plus(more), scorer_tokens

    async def cut(self, partials: list[Beam], at: int) -> tuple[list[Beam], list[Beam], int]:
        """Scores the distinct partial answers at the checkpoint -> (the top reject_keep and any finished,
        the rest marked cut, scorer tokens). Identical partials are one: a survivor slot each is distinct text."""
        distinct = distinct_pool(partials)  # numbered here only; the round's pool numbers them again
        scorer_tokens = await self.score(distinct)
        keep = self.params.reject_keep or self.width
        ranked = by_score(distinct)
        survivors = ranked[:keep] + [b for b in ranked[keep:] if b.finished]  # a finished one cost no more: it competes
        cut = [replace(b, cut_at=at) for b in ranked[keep:] if not b.finished]
        return survivors, cut, scorer_tokens
