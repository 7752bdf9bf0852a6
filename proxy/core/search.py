"""Chunk-level Beam Search (weak-to-strong search, arXiv 2405.19262).

Pure: the sampler (the big upstream model) and the scoring session (the small
guide pair) are injected. No aiohttp, torch or SDK imports here.

One round is four named steps:

    draw    ask the upstream for a chunk for every unfinished kept beam (K each;
            W*K from the bare prompt in round 0)
    expand  turn chunks into children: the parent's text plus the chunk
    score   score every new candidate's *whole* partial answer (EOS if it stopped)
    select  keep the top W; finished candidates stay in the pool and compete

Semantics follow the paper's code, with two deliberate differences, both
configurable or harmless:
  * identical candidates are scored once and take one of the W slots, so a
    finished beam copied K times cannot crowd distinct beams out;
  * answers cut at max_tokens are finished but get no EOS term unless
    `eos_on_length` (they did not choose to stop).

The rest of the search lives beside it, each a concept of its own: the beams
(search_beams.py), the allocate step of the cheaper strategies, k_tau and
decide_after (search_allocate.py), the money budget max_cost_usd
(search_budget.py) and whole answers: guided Best-of-N, tools and output
formats (search_whole.py).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Awaitable, Callable

from w2s.proxy.core.cost import Prices, cost_usd
from w2s.proxy.core.errors import UpstreamError
from w2s.proxy.core.interfaces import Sampler, ScoringSession
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.search_allocate import AllocateSteps
from w2s.proxy.core.search_beams import ROOT, Beam, Draw, by_score, committed_prefix, distinct_pool
from w2s.proxy.core.search_budget import MoneySteps, Spent
from w2s.proxy.core.search_early import EarlySteps
from w2s.proxy.core.search_whole import WholeAnswerSteps
from w2s.proxy.core.types import (
    Answer,
    CandidateTrace,
    Chunk,
    Continuation,
    Prompt,
    RoundTrace,
    SampleRequest,
    SampleResult,
    SearchParams,
    SearchResult,
)

__all__ = ["OnRound", "SEED_STRIDE", "committed_prefix", "search"]

OnRound = Callable[[RoundTrace, list[str]], Awaitable[None] | None]
SEED_STRIDE = 1_000_003  # round r of a seeded search draws with seed * SEED_STRIDE + r


class _Search(WholeAnswerSteps, AllocateSteps, MoneySteps, EarlySteps):
    """The state one search carries from round to round; the whole-answer, allocate, money and early-rejection
    steps are its mixins (search_whole.py, search_allocate.py, search_budget.py, search_early.py)."""

    def __init__(self, prompt: Prompt, sampler: Sampler, scorer: ScoringSession | None,
                 params: SearchParams, on_round: OnRound | None, mode: SearchMode, prices: Prices | None = None):
        self.prompt, self.sampler, self.scorer, self.params = prompt, sampler, scorer, params
        self.prices = prices  # the upstream's, USD per million tokens: cost_usd and max_cost_usd
        self.lead: int | None = None  # index of the best kept beam in the last round's candidates
        self.streak = 0  # rounds in a row the best kept beam descended from the previous best
        self.decided = False  # decide_after: only the leading beam(s) are continued from here on
        self.last_draws = 0  # draws of the last round (prompt tokens per draw: max_cost_usd's estimate)
        self.on_round = on_round
        # Pass-through routes return n independent draws, duplicates included, as OpenAI's `n` does.
        self.distinct = mode is not SearchMode.PASSTHROUGH
        self.width = max(params.w, params.n)  # n distinct answers need at least n beams
        self.result = SearchResult(answers=[], mode=mode)
        self.start_whole_answers(mode)  # chunks, or whole answers only (search_whole.py)
        self.score_cache: dict[tuple, float] = {}  # identical candidates scored once
        self.kept: list[Beam] = []

    async def run(self) -> SearchResult:
        index = 0
        while True:
            await self.round(index)
            index += 1
            if all(b.finished or b.draws == 0 for b in self.kept) or self.out_of_money():
                break
        n = self.params.n
        # Finished beams first: a pruned partial answer is only returned when n asks for more.
        self.kept = [b for b in self.kept if b.finished] + [b for b in self.kept if not b.finished]
        self.result.answers = [Answer(b.text, b.score, b.finish_reason, b.tokens, b.stop_sequence, b.index,
                                      tool_calls=b.tool_calls) for b in self.kept[:n]]
        return self.result

    async def round(self, index: int) -> None:
        draws = self.parents(index)
        at = self.early_at()
        if at is None:
            sampled, spent = await self.draw(draws, index)
            children = self.expand(draws, sampled.chunks, sampled.exact)
            self.account(sampled, spent)
            early_scorer_tokens = 0
        else:  # reject_at: two calls, the draws cut at the checkpoint among the children (search_early.py)
            children, sampled, spent, early_scorer_tokens = await self.draw_early(draws, index, at)
        if not children and not any(b.finished for b in self.kept):
            raise UpstreamError(f"all {len(draws)} upstream draws failed in round {index}",
                                provider=getattr(self.sampler, "name", ""))
        candidates = self.pool(children)
        t0 = time.perf_counter()
        scorer_tokens = early_scorer_tokens + await self.score(candidates)
        score_seconds = time.perf_counter() - t0
        self.result.scorer_tokens += scorer_tokens
        self.kept = self.select(candidates)
        self.allocate()
        if not self.kept:
            self.no_valid_answer(candidates)
        trace = self.trace(index, candidates, spent, scorer_tokens, score_seconds, sampled)
        self.result.rounds.append(trace)
        if self.on_round is not None:
            maybe = self.on_round(trace, [b.text for b in self.kept])
            if maybe is not None:
                await maybe

    # --- draw -------------------------------------------------------------------

    def parents(self, index: int) -> list[Draw]:
        """Round 0: W*K draws from the bare prompt; then K per unfinished kept beam."""
        if index == 0:
            return [(None, ROOT)] * (self.width * self.params.k)
        return [(b.index, b) for b in self.kept if not b.finished for _ in range(b.draws)]

    def continuations(self, draws: list[Draw], chunk: int | None = None) -> list[Continuation]:
        """What each draw asks for: a chunk of l tokens (or `chunk`: early rejection's part of one), or
        the whole rest of the answer; within max_tokens and what is left of the budgets."""
        p = self.params
        chunk_len = (chunk or p.l) if self.exact and not self.whole else None
        share = None
        if p.max_upstream_tokens is not None:
            # Share what is left of the budget between the draws of this round.
            left = p.max_upstream_tokens - self.result.upstream_completion_tokens
            share = max(1, left // len(draws))
        money = self.money_share(len(draws))
        if money is not None:
            share = money if share is None else min(share, money)
        conts = []
        for _, beam in draws:
            room = p.max_tokens - beam.tokens
            limit = room if chunk_len is None else min(chunk_len, room)
            conts.append(Continuation(beam.text, limit if share is None else min(limit, share)))
        return conts

    async def draw(self, draws: list[Draw], index: int, chunk: int | None = None,
                   seed_offset: int = 0) -> tuple[SampleResult, Spent]:
        p = self.params
        seed = None if p.seed is None else p.seed * SEED_STRIDE + seed_offset + index
        self.last_draws = len(draws)
        req = SampleRequest(self.prompt, self.continuations(draws, chunk), p.temperature, p.top_p, p.top_k,
                            p.stop, seed)
        t0 = time.perf_counter()
        sampled = await self.sampler.sample(req)
        spent = Spent(calls=sampled.calls, seconds=time.perf_counter() - t0)
        for chunk in sampled.chunks:
            spent.prompt_tokens += chunk.prompt_tokens
            spent.completion_tokens += chunk.completion_tokens
            spent.cached_tokens += chunk.cached_tokens
            spent.cache_write_tokens += chunk.cache_write_tokens
            spent.failed += chunk.error is not None
        return sampled, spent

    # --- expand -----------------------------------------------------------------

    def expand(self, draws: list[Draw], chunks: list[Chunk], exact: bool) -> list[Beam]:
        children = []
        for (pidx, parent), chunk in zip(draws, chunks):
            if chunk.error is not None:
                continue
            if not exact:
                # The upstream could not continue the prefix (e.g. a prefill
                # refusal found mid-search): the chunk is a whole fresh answer.
                children.append(Beam(chunk.text, chunk.completion_tokens, True, chunk.finish_reason,
                                      tool_calls=chunk.tool_calls))
                continue
            children.append(self.child(pidx, parent, chunk))
        return children

    def child(self, pidx: int | None, parent: Beam, chunk: Chunk) -> Beam:
        # At least one token of progress per round, whatever a provider reports.
        tokens = parent.tokens + max(1, chunk.completion_tokens)
        child = Beam(parent.text + chunk.text, tokens, parent=pidx, tool_calls=chunk.tool_calls)
        if chunk.finish_reason == "stop" or chunk.tool_calls:
            child.finish("stop", chunk.stop_sequence)
        elif tokens >= self.params.max_tokens or not self.exact or self.whole:
            # Cut by max_tokens; or a non-exact upstream, whose answers cannot be continued; or a whole
            # answer (tools, an output format) that was cut.
            child.finish("length")
        return child

    def account(self, sampled: SampleResult, spent: Spent) -> None:
        r = self.result
        if not sampled.exact and self.exact:
            # Found mid-search (e.g. a prefill refusal): no more continuation.
            self.no_continuation(f"upstream {getattr(self.sampler, 'name', '')!r} stopped continuing partial "
                                 f"answers in round {len(r.rounds)}: the rest are whole answers")
        r.lost_draws += spent.failed
        r.note(*sampled.notes)
        r.upstream_calls += spent.calls
        r.upstream_prompt_tokens += spent.prompt_tokens
        r.upstream_completion_tokens += spent.completion_tokens
        r.upstream_cached_tokens += spent.cached_tokens
        r.upstream_cache_write_tokens += spent.cache_write_tokens
        if self.prices is not None:
            r.cost_usd = (r.cost_usd or 0.0) + cost_usd(spent.usage, self.prices)

    def pool(self, children: list[Beam]) -> list[Beam]:
        """This round's candidates: finished kept beams (they compete again) and the children."""
        carried = [replace(b, parent=b.index) for b in self.kept if b.finished]
        candidates = distinct_pool(carried + children, self.distinct)
        if self.budget_spent():
            self.result.budget_exhausted = True
            for b in candidates:
                if not b.finished:
                    b.finish("length")
            candidates = distinct_pool(candidates, self.distinct)
        self.check_format(candidates)
        return candidates

    # --- score and select (allocate: search_allocate.py) ---------------------------

    async def score(self, candidates: list[Beam]) -> int:
        """Scores the candidates not seen before -> scorer tokens this took."""
        p = self.params
        to_score = [b for b in candidates if b.key not in self.score_cache and b.rejected is None]
        # Plain sampling (one candidate, nothing to choose) never runs the scorer.
        wanted = len(candidates) > 1 or p.w * p.k > 1
        before = self.scorer.tokens_computed if self.scorer is not None else 0
        if self.scorer is not None and to_score and wanted:
            scores = await self.scorer.score([b.score_item(p.eos_on_length) for b in to_score])
            self.score_cache.update((b.key, s) for b, s in zip(to_score, scores))
        for b in candidates:
            b.score = self.score_cache.get(b.key)
        return (self.scorer.tokens_computed if self.scorer is not None else 0) - before

    def select(self, candidates: list[Beam]) -> list[Beam]:
        # A rejected candidate (the output format) and one cut at the checkpoint (reject_at) are never kept.
        return by_score([b for b in candidates if b.rejected is None and b.cut_at is None])[: self.width]

    def trace(self, index: int, candidates: list[Beam], spent: Spent, scorer_tokens: int,
              score_seconds: float, sampled: SampleResult) -> RoundTrace:
        kept = {id(b) for b in self.kept}
        rd = RoundTrace(
            index=index,
            candidates=[CandidateTrace(b.text, b.parent, b.score, b.finished, id(b) in kept,
                                       b.finish_reason if b.finished else None, b.tokens,
                                       tool_calls=b.tool_calls, rejected=b.rejected, cut_at=b.cut_at)
                        for b in candidates],
            upstream_calls=spent.calls,
            upstream_prompt_tokens=spent.prompt_tokens,
            upstream_completion_tokens=spent.completion_tokens,
            scorer_tokens=scorer_tokens,
            sample_seconds=spent.seconds,
            score_seconds=score_seconds,
            failed_chunks=spent.failed,
            exact=sampled.exact,
            notes=list(sampled.notes),
            upstream_cached_tokens=spent.cached_tokens,
            upstream_cache_write_tokens=spent.cache_write_tokens,
            cost_usd=cost_usd(spent.usage, self.prices),
            decided=self.decided,
        )
        for c, b in zip(rd.candidates, candidates):
            if c.kept and not b.finished:  # what allocate gave it: a pruned node ends its path here
                c.draws, c.pruned = b.draws, b.draws == 0
        parts_of = getattr(self.scorer, "parts_of", None)  # a mixture guide: each part's score too
        if parts_of is not None:
            for c, b in zip(rd.candidates, candidates):
                c.parts = parts_of(b.score_item(self.params.eos_on_length))
        return rd


async def search(
    prompt: Prompt,
    sampler: Sampler,
    scorer: ScoringSession | None,
    params: SearchParams,
    on_round: OnRound | None = None,
    *,
    mode: SearchMode | None = None,
    prices: Prices | None = None,
) -> SearchResult:
    """Run CBS with `params` (validated by whoever built them: `Engine.plan`).

    `mode` is the planned mode (`Engine.plan` decides it; None: decided here the
    same way). It changes only by an explicit fallback with its reason."""
    if mode is None:
        mode = decide_mode(params, exact=sampler.exact_continuation)
    return await _Search(prompt, sampler, scorer, params, on_round, mode, prices).run()

