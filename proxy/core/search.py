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
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Awaitable, Callable

from w2s.proxy.core.cost import Prices, Usage, cost_usd, tokens_affordable
from w2s.proxy.core.errors import NoValidAnswer, UpstreamError
from w2s.proxy.core.interfaces import Sampler, ScoringSession
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.tools import ToolCall, answer_text, check_calls, check_output, whole_reason
from w2s.proxy.core.types import (
    Answer,
    CandidateTrace,
    Chunk,
    Continuation,
    FinishReason,
    Prompt,
    RoundTrace,
    SampleRequest,
    SampleResult,
    ScoreItem,
    SearchParams,
    SearchResult,
)

OnRound = Callable[[RoundTrace, list[str]], Awaitable[None] | None]
SEED_STRIDE = 1_000_003  # round r of a seeded search draws with seed * SEED_STRIDE + r


@dataclass
class _Beam:
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

    @property
    def key(self) -> tuple[str, bool, tuple[ToolCall, ...]]:
        return (self.text, self.finished, self.tool_calls)

    def score_item(self, eos_on_length: bool) -> ScoreItem:
        eos = self.finished and (self.finish_reason == "stop" or eos_on_length)
        return ScoreItem(answer_text(self.text, self.tool_calls), eos)  # a call is scored as text

    def finish(self, reason: FinishReason, stop_sequence: str | None = None) -> None:
        self.finished, self.finish_reason, self.stop_sequence = True, reason, stop_sequence


ROOT = _Beam("", 0)
Draw = tuple[int | None, _Beam]  # (parent's index in the last round, parent)


def _distinct(pool: list[_Beam], distinct: bool = True) -> list[_Beam]:
    """First occurrence of each (text, finished); numbers them as the trace will.

    With `distinct=False` every beam stays (numbered only): independent draws.
    """
    if distinct:
        seen: dict[tuple, _Beam] = {}
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


@dataclass
class _Spent:
    """What one round's draws cost upstream."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    seconds: float = 0.0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def usage(self) -> Usage:
        return Usage(self.calls, self.prompt_tokens, self.cached_tokens, self.cache_write_tokens,
                     self.completion_tokens)


class _Search:
    """The state one search carries from round to round."""

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
        # An upstream that cannot continue a prefix exactly only gets one round of
        # whole answers: guided Best-of-N, labelled as such.
        self.exact = True
        if not sampler.exact_continuation:
            self.no_continuation(f"upstream {getattr(sampler, 'name', '')!r} cannot continue a partial answer: "
                                 "whole answers only")
        # A tool call or JSON answer cannot be cut: one round of whole answers (prompt.whole_answers).
        self.whole = prompt.whole_answers
        if self.whole:
            self.result.note(whole_reason(prompt.tools, prompt.output, mode))
        self.score_cache: dict[tuple, float] = {}  # identical candidates scored once
        self.kept: list[_Beam] = []

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
        sampled, spent = await self.draw(draws, index)
        children = self.expand(draws, sampled.chunks, sampled.exact)
        self.account(sampled, spent)
        if not children and not any(b.finished for b in self.kept):
            raise UpstreamError(f"all {len(draws)} upstream draws failed in round {index}",
                                provider=getattr(self.sampler, "name", ""))
        candidates = self.pool(children)
        t0 = time.perf_counter()
        scorer_tokens = await self.score(candidates)
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

    def continuations(self, draws: list[Draw]) -> list[Continuation]:
        p = self.params
        chunk_len = p.l if self.exact and not self.whole else None
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

    async def draw(self, draws: list[Draw], index: int) -> tuple[SampleResult, _Spent]:
        p = self.params
        seed = None if p.seed is None else p.seed * SEED_STRIDE + index
        self.last_draws = len(draws)
        req = SampleRequest(self.prompt, self.continuations(draws), p.temperature, p.top_p, p.top_k, p.stop, seed)
        t0 = time.perf_counter()
        sampled = await self.sampler.sample(req)
        spent = _Spent(calls=sampled.calls, seconds=time.perf_counter() - t0)
        for chunk in sampled.chunks:
            spent.prompt_tokens += chunk.prompt_tokens
            spent.completion_tokens += chunk.completion_tokens
            spent.cached_tokens += chunk.cached_tokens
            spent.cache_write_tokens += chunk.cache_write_tokens
            spent.failed += chunk.error is not None
        return sampled, spent

    # --- expand -----------------------------------------------------------------

    def expand(self, draws: list[Draw], chunks: list[Chunk], exact: bool) -> list[_Beam]:
        children = []
        for (pidx, parent), chunk in zip(draws, chunks):
            if chunk.error is not None:
                continue
            if not exact:
                # The upstream could not continue the prefix (e.g. a prefill
                # refusal found mid-search): the chunk is a whole fresh answer.
                children.append(_Beam(chunk.text, chunk.completion_tokens, True, chunk.finish_reason,
                                      tool_calls=chunk.tool_calls))
                continue
            children.append(self.child(pidx, parent, chunk))
        return children

    def child(self, pidx: int | None, parent: _Beam, chunk: Chunk) -> _Beam:
        # At least one token of progress per round, whatever a provider reports.
        tokens = parent.tokens + max(1, chunk.completion_tokens)
        child = _Beam(parent.text + chunk.text, tokens, parent=pidx, tool_calls=chunk.tool_calls)
        if chunk.finish_reason == "stop" or chunk.tool_calls:
            child.finish("stop", chunk.stop_sequence)
        elif tokens >= self.params.max_tokens or not self.exact or self.whole:
            # Cut by max_tokens; or a non-exact upstream, whose answers cannot be continued; or a whole
            # answer (tools, an output format) that was cut.
            child.finish("length")
        return child

    def no_continuation(self, reason: str) -> None:
        """From here on, whole answers only: the planned mode falls back (CBS and BoN to bon-approx)."""
        self.exact = False
        after = decide_mode(self.params, exact=False, passthrough=self.result.mode is SearchMode.PASSTHROUGH)
        if self.result.mode is not SearchMode.SAMPLE:
            self.result.fall_back(after, reason)

    def account(self, sampled: SampleResult, spent: _Spent) -> None:
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

    def pool(self, children: list[_Beam]) -> list[_Beam]:
        """This round's candidates: finished kept beams (they compete again) and the children."""
        carried = [replace(b, parent=b.index) for b in self.kept if b.finished]
        candidates = _distinct(carried + children, self.distinct)
        budget = self.params.max_upstream_tokens
        if (budget is not None and self.result.upstream_completion_tokens >= budget) or self.money_spent():
            self.result.budget_exhausted = True
            for b in candidates:
                if not b.finished:
                    b.finish("length")
            candidates = _distinct(candidates, self.distinct)
        self.check_format(candidates)
        return candidates

    def check_format(self, candidates: list[_Beam]) -> None:
        """A candidate that cannot be returned: under an output format, text that does not parse (or
        validate); a call to a function not offered, or whose arguments do not validate against its
        parameters. A candidate that calls tools answers with its calls: its text is not checked."""
        fmt, tools = self.prompt.output, self.prompt.tools
        for b in candidates:
            if b.rejected is not None:
                continue
            if tools is not None and (b.tool_calls or tools.choice in ("required", "function")):
                b.rejected = check_calls(b.tool_calls, tools)
            elif fmt is not None and not b.tool_calls:
                b.rejected = check_output(b.text, fmt)

    def no_valid_answer(self, candidates: list[_Beam]) -> None:
        """No candidate passed its checks: a 502 with what each was, never an invalid answer."""
        why = "; ".join(f"candidate {b.index}: {b.rejected}" for b in candidates[:8])
        raise NoValidAnswer(f"no candidate of {len(candidates)} was valid under the request's output format or tools "
                            f"({why})", notes=self.result.notes)

    # --- score and select -------------------------------------------------------

    async def score(self, candidates: list[_Beam]) -> int:
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

    def select(self, candidates: list[_Beam]) -> list[_Beam]:
        # Stable sort: ties go to the earlier candidate, as in the paper's topk.
        valid = [b for b in candidates if b.rejected is None]  # a rejected candidate is never kept
        ranked = sorted(valid, key=lambda b: -(b.score if b.score is not None else 0.0))
        return ranked[: self.width]

    # --- allocate: how many continuations each kept beam gets next round ---------

    def allocate(self) -> None:
        """k per kept unfinished beam (CBS); fewer behind the best (k_tau); none but the leaders once decided."""
        p = self.params
        self.update_decided()
        best = _score(self.kept[0]) if self.kept else 0.0
        leaders = {id(b) for b in self.kept[: max(1, p.n)]}
        for b in self.kept:
            if b.finished or (self.decided and id(b) not in leaders):
                b.draws = 0
            elif p.k_tau is not None and not self.decided:
                gap = max(0.0, best - _score(b))
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

    # --- money: max_cost_usd ----------------------------------------------------

    def money_left(self) -> float | None:
        if self.params.max_cost_usd is None or self.prices is None:
            return None
        return self.params.max_cost_usd - (self.result.cost_usd or 0.0)

    def money_spent(self) -> bool:
        left = self.money_left()
        return left is not None and left <= 0

    def prompt_per_call(self) -> float:
        """Prompt tokens one draw sent in the last round (0 before the first): what the next will send at least."""
        last = self.result.rounds[-1] if self.result.rounds else None
        return last.upstream_prompt_tokens / max(1, self.last_draws) if last is not None else 0.0

    def money_share(self, draws: int) -> int | None:
        """Completion tokens each of this round's draws may write within max_cost_usd; None: no money budget."""
        left = self.money_left()
        if left is None:
            return None
        return max(1, tokens_affordable(left, draws, self.prompt_per_call(), self.prices) // max(1, draws))

    def out_of_money(self) -> bool:
        """Not enough of max_cost_usd left for the next round's prompts and a token each: every kept beam ends
        here (finish_reason length), the best so far is the answer."""
        left = self.money_left()
        if left is None:
            return False
        draws = sum(b.draws for b in self.kept if not b.finished)
        if draws and tokens_affordable(left, draws, self.prompt_per_call(), self.prices) >= draws:
            return False
        self.result.budget_exhausted = True
        for b in self.kept:
            if not b.finished:
                b.finish("length")
        return True

    def trace(self, index: int, candidates: list[_Beam], spent: _Spent, scorer_tokens: int,
              score_seconds: float, sampled: SampleResult) -> RoundTrace:
        kept = {id(b) for b in self.kept}
        rd = RoundTrace(
            index=index,
            candidates=[CandidateTrace(b.text, b.parent, b.score, b.finished, id(b) in kept,
                                       b.finish_reason if b.finished else None, b.tokens,
                                       tool_calls=b.tool_calls, rejected=b.rejected) for b in candidates],
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


def _score(b: _Beam) -> float:
    return b.score if b.score is not None else 0.0
