"""Chunk-level Beam Search (weak-to-strong search, arXiv 2405.19262).

Pure: the sampler (the big upstream model) and the scoring session (the small
guide pair) are injected. No aiohttp, torch or SDK imports here.

Semantics follow the paper's code, with two deliberate differences, both
configurable or harmless:
  * identical candidates are scored once and take one of the W slots, so a
    finished beam copied K times cannot crowd distinct beams out;
  * answers cut at max_tokens are finished but get no EOS term unless
    `eos_on_length` (they did not choose to stop).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Awaitable, Callable

from providers.base import Sampler
from proxy.errors import UpstreamError
from proxy.types import (
    Answer,
    CandidateTrace,
    Continuation,
    FinishReason,
    Prompt,
    RoundTrace,
    SampleRequest,
    ScoreItem,
    SearchParams,
    SearchResult,
)
from scorers.base import ScoringSession

OnRound = Callable[[RoundTrace, list[str]], Awaitable[None] | None]


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

    @property
    def key(self) -> tuple[str, bool]:
        return (self.text, self.finished)

    def score_item(self, eos_on_length: bool) -> ScoreItem:
        eos = self.finished and (self.finish_reason == "stop" or eos_on_length)
        return ScoreItem(self.text, eos)


def _distinct(pool: list[_Beam], distinct: bool = True) -> list[_Beam]:
    """First occurrence of each (text, finished); numbers them as the trace will.

    With `distinct=False` every beam stays (numbered only): independent draws.
    """
    if distinct:
        seen: dict[tuple[str, bool], _Beam] = {}
        for b in pool:
            seen.setdefault(b.key, b)
        out = list(seen.values())
    else:
        out = list(pool)
    for i, b in enumerate(out):
        b.index = i
    return out


def mode_of(params: SearchParams, exact: bool = True) -> str:
    if params.w * params.k == 1:
        return "sample"
    if params.l is None:
        return "bon" if exact else "bon-approx"
    return "cbs" if exact else "bon-approx"


def committed_prefix(texts: list[str]) -> str:
    """The text every kept beam already agrees on: safe to stream."""
    if not texts:
        return ""
    lo, hi = min(texts), max(texts)  # the common prefix of the extremes is everyone's
    i = 0
    while i < len(lo) and i < len(hi) and lo[i] == hi[i]:
        i += 1
    return lo[:i]


async def search(
    prompt: Prompt,
    sampler: Sampler,
    scorer: ScoringSession | None,
    params: SearchParams,
    on_round: OnRound | None = None,
    *,
    distinct: bool = True,
) -> SearchResult:
    """Run CBS. `distinct=False` keeps identical candidates apart: pass-through
    routes return n independent draws, duplicates included, as OpenAI's `n` does."""
    params.validate()
    width = max(params.w, params.n)  # n distinct answers need at least n beams
    exact = sampler.exact_continuation
    # An upstream that cannot continue a prefix exactly only gets one round of
    # whole answers: guided Best-of-N, labelled as such.
    chunk_len = params.l if exact else None
    result = SearchResult(answers=[], mode=mode_of(params, exact))
    score_cache: dict[tuple[str, bool], float] = {}  # identical candidates scored once
    kept: list[_Beam] = []
    round_idx = 0

    while True:
        if round_idx == 0:
            parents_for_draw = [(None, _Beam("", 0))] * (width * params.k)
        else:
            parents_for_draw = [(b.index, b) for b in kept if not b.finished for _ in range(params.k)]
        budget_left = None
        if params.max_upstream_tokens is not None:
            budget_left = params.max_upstream_tokens - result.upstream_completion_tokens
        conts = []
        for _, beam in parents_for_draw:
            room = params.max_tokens - beam.tokens
            limit = room if chunk_len is None else min(chunk_len, room)
            if budget_left is not None:
                # Share what is left of the budget between the draws of this round.
                limit = min(limit, max(1, budget_left // len(parents_for_draw)))
            conts.append(Continuation(beam.text, limit))

        seed = None if params.seed is None else params.seed * 1_000_003 + round_idx
        req = SampleRequest(prompt, conts, params.temperature, params.top_p, params.top_k, params.stop, seed)
        t0 = time.perf_counter()
        sampled = await sampler.sample(req)
        t_sample = time.perf_counter() - t0

        children: list[_Beam] = []
        failed = 0
        prompt_toks = completion_toks = 0
        for (pidx, parent), cont, chunk in zip(parents_for_draw, conts, sampled.chunks):
            prompt_toks += chunk.prompt_tokens
            completion_toks += chunk.completion_tokens
            if chunk.error is not None:
                failed += 1
                continue
            if not sampled.exact:
                # The upstream could not continue the prefix (e.g. a prefill
                # refusal found mid-search): the chunk is a whole fresh answer.
                children.append(_Beam(chunk.text, chunk.completion_tokens, True, chunk.finish_reason, parent=None))
                continue
            # At least one token of progress per round, whatever a provider reports.
            tokens = parent.tokens + max(1, chunk.completion_tokens)
            child = _Beam(parent.text + chunk.text, tokens, parent=pidx)
            if chunk.finish_reason == "stop":
                child.finished, child.finish_reason = True, "stop"
                child.stop_sequence = chunk.stop_sequence
            elif tokens >= params.max_tokens or not exact:
                # Cut by max_tokens; or a non-exact upstream, whose answers
                # cannot be continued.
                child.finished, child.finish_reason = True, "length"
            children.append(child)
        if not sampled.exact and exact:
            exact, chunk_len = False, None
            result.mode = mode_of(params, exact=False)
        result.upstream_calls += sampled.calls
        result.upstream_prompt_tokens += prompt_toks
        result.upstream_completion_tokens += completion_toks
        if not children and not any(b.finished for b in kept):
            raise UpstreamError(f"all {len(conts)} upstream draws failed in round {round_idx}",
                                provider=getattr(sampler, "name", ""))

        # Finished kept beams stay in the pool and compete.
        carried = [replace(b, parent=b.index) for b in kept if b.finished]
        candidates = _distinct(carried + children, distinct)

        budget_hit = (params.max_upstream_tokens is not None
                      and result.upstream_completion_tokens >= params.max_upstream_tokens)
        if budget_hit:
            result.budget_exhausted = True
            for b in candidates:
                if not b.finished:
                    b.finished, b.finish_reason = True, "length"
            candidates = _distinct(candidates, distinct)

        t1 = time.perf_counter()
        scorer_before = scorer.tokens_computed if scorer is not None else 0
        to_score = [b for b in candidates if b.key not in score_cache]
        if scorer is not None and to_score and (len(candidates) > 1 or params.w * params.k > 1):
            scores = await scorer.score([b.score_item(params.eos_on_length) for b in to_score])
            for b, s in zip(to_score, scores):
                score_cache[b.key] = s
        for b in candidates:
            b.score = score_cache.get(b.key)
        t_score = time.perf_counter() - t1
        scorer_toks = (scorer.tokens_computed if scorer is not None else 0) - scorer_before
        result.scorer_tokens += scorer_toks

        # Stable sort: ties go to the earlier candidate, as in the paper's topk.
        ranked = sorted(candidates, key=lambda b: -(b.score if b.score is not None else 0.0))
        kept = ranked[:width]
        kept_ids = {id(b) for b in kept}
        trace = RoundTrace(
            index=round_idx,
            candidates=[CandidateTrace(b.text, b.parent, b.score, b.finished, id(b) in kept_ids,
                                       b.finish_reason if b.finished else None, b.tokens) for b in candidates],
            upstream_calls=sampled.calls,
            upstream_prompt_tokens=prompt_toks,
            upstream_completion_tokens=completion_toks,
            scorer_tokens=scorer_toks,
            sample_seconds=t_sample,
            score_seconds=t_score,
            failed_chunks=failed,
            exact=sampled.exact,
        )
        result.rounds.append(trace)
        if on_round is not None:
            maybe = on_round(trace, [b.text for b in kept])
            if maybe is not None:
                await maybe
        round_idx += 1
        if all(b.finished for b in kept):
            break

    result.answers = [Answer(b.text, b.score, b.finish_reason, b.tokens, b.stop_sequence) for b in kept[: params.n]]
    return result
