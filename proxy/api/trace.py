"""The search trace: one versioned schema for the API, the live page, trace files and batch output.

Where it appears: `"w2s": {"trace": true}` in a response body (and so in batch
output lines), `w2s generate --trace-json FILE`, the page's playground stream
(one round at a time) and its recent searches. A consumer checks `version`.

Version 2 (version 1 had no `prompt`, `state`, `chunk`, `chunk_tokens`,
`carried` or answer `path`; its other fields are unchanged):

    {"version": 2, "route", "mode", "params": {w, k, l, max_tokens, ...},
     "prompt": {"text", "chars", "truncated"},
     "upstream_calls", "upstream_prompt_tokens", "upstream_completion_tokens", "scorer_tokens",
     "budget_exhausted", "lost_draws", "notes": [...],   # what degraded (also without the trace: `summary`)
     "cost": {"upstream_calls", "prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens",
              "cost_usd"},                        # cost_usd where the upstream has prices (docs/cost.md)
     "answers": [{"text", "score", "finish_reason", "completion_tokens", "stop_sequence",
                  "candidate", "path"}],           # path[r]: its candidate in round r (null before it began)
     "rounds": [{"index", "upstream_calls", "upstream_prompt_tokens", "upstream_completion_tokens",
                 "scorer_tokens", "sample_seconds", "score_seconds", "failed_chunks", "exact", "notes",
                 "candidates": [{"index", "parent", "text", "chunk", "score", "state", "kept", "finished",
                                 "finish_reason", "tokens", "chunk_tokens", "carried",
                                 "tool_calls", "rejected"}]}]}   # tools and output formats: docs/tools.md

A candidate's `parent` indexes the previous round's candidates; `chunk` is what
this round added (its text minus its parent's); `state` is "kept" (goes on),
"finished" (kept, and done: it competes again next round as a `carried` copy),
or "pruned". The upstream calls and tokens are per round: every candidate of a
round shares them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterator

from w2s.proxy.api.job import Job
from w2s.proxy.core.cost import cost_fields
from w2s.proxy.core.types import CandidateTrace, Prompt, RoundTrace, SearchResult, content_text

TRACE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # what the page can draw


def trace_body(result: SearchResult, job: Job, prompt_chars: int | None = None) -> dict[str, Any]:
    """The whole search; the prompt cut to `prompt_chars` (None: whole). Non-finite scores become null."""
    rounds = [round_body(r, result.rounds[i - 1] if i else None) for i, r in enumerate(result.rounds)]
    return _finite({
        "version": TRACE_VERSION,
        "route": job.route,
        "mode": result.mode,
        "mode_changes": [{"from": c.before, "to": c.after, "reason": c.reason} for c in result.mode_changes],
        "upstream": result.upstream,
        "params": dataclasses.asdict(job.params),
        "guide_weights": job.plan.guide_weights,  # a mixture's weights as this request set them (null: config's)
        "prompt": prompt_view(job.prompt, prompt_chars),
        "upstream_calls": result.upstream_calls,
        "upstream_prompt_tokens": result.upstream_prompt_tokens,
        "upstream_completion_tokens": result.upstream_completion_tokens,
        "scorer_tokens": result.scorer_tokens,
        "budget_exhausted": result.budget_exhausted,
        "lost_draws": result.lost_draws,
        "notes": list(result.notes),
        "cost": cost_fields(result),  # calls, prompt (cached, cache_write) and completion tokens, cost_usd
        "answers": [{**dataclasses.asdict(a), "path": answer_path(result.rounds, a.candidate)}
                    for a in result.answers],
        "rounds": rounds,
    })


def summary(result: SearchResult) -> dict[str, Any] | None:
    """What went less than planned, when something did: draws lost, upstream workarounds, a fallback.
    Every response carries it (as its `w2s` field) when there is any: never silently."""
    if not (result.lost_draws or result.notes):
        return None
    return {"mode": result.mode, "lost_draws": result.lost_draws, "notes": list(result.notes)}


def w2s_field(result: SearchResult, job: Job) -> dict[str, Any] | None:
    """The response's `w2s` field: the whole trace when asked for, else the summary (or nothing)."""
    if job.trace:
        return trace_body(result, job)
    short = summary(result)
    if short is None and not getattr(job, "cost", False):
        return None
    return {**(short or {}), "cost": cost_fields(result)}


def round_body(rd: RoundTrace, previous: RoundTrace | None) -> dict[str, Any]:
    """One round; `previous` (the round before, None for the first) gives each chunk its parent."""
    body = {f.name: getattr(rd, f.name) for f in dataclasses.fields(rd) if f.name != "candidates"}
    before = previous.candidates if previous is not None else []
    body["candidates"] = [candidate_body(i, c, _parent(before, c.parent)) for i, c in enumerate(rd.candidates)]
    return _finite(body)


def candidate_body(index: int, c: CandidateTrace, parent: CandidateTrace | None) -> dict[str, Any]:
    # An upstream that lost exact continuation returns whole fresh answers: no parent, all chunk.
    extends = parent is not None and c.text.startswith(parent.text)
    carried = extends and parent.finished and c.text == parent.text
    return {
        "index": index,
        "parent": c.parent,
        "text": c.text,
        "chunk": c.text[len(parent.text):] if extends else c.text,
        "score": c.score,
        "state": state_of(c),
        "kept": c.kept,
        "finished": c.finished,
        "finish_reason": c.finish_reason,
        "tokens": c.tokens,
        "chunk_tokens": c.tokens - parent.tokens if extends else c.tokens,
        "carried": carried,
        # Kept but given no continuation (k_tau with k_min 0, decide_after): its path ends here, unfinished.
        "pruned_early": c.pruned,
        # Cut this many tokens into its chunk by early rejection (reject_at): scored there, never drawn on.
        "cut_at": c.cut_at,
        "draws": c.draws,  # continuations it gets next round (kept, unfinished): fewer than k when behind
        "parts": c.parts,  # a mixture guide: {part: raw score}, score = sum(weight * part); else null
        "tool_calls": [dataclasses.asdict(t) for t in c.tool_calls],  # a candidate that calls tools
        "rejected": c.rejected,  # why it could not be returned (the output format): never scored nor kept
    }


def state_of(c: CandidateTrace) -> str:
    if not c.kept:
        return "pruned"
    return "finished" if c.finished else "kept"


def answer_path(rounds: list[RoundTrace], candidate: int | None) -> list[int | None]:
    """The answer's candidate in every round, walking parent edges back from the last round."""
    path: list[int | None] = [None] * len(rounds)
    index = candidate
    for r in range(len(rounds) - 1, -1, -1):
        if index is None or not 0 <= index < len(rounds[r].candidates):
            break
        path[r] = index
        index = rounds[r].candidates[index].parent
    return path


def prompt_view(prompt: Prompt, limit: int | None) -> dict[str, Any]:
    """The prompt as one text ("role: content" lines for chat), cut to `limit` characters."""
    if prompt.text is not None:
        text = prompt.text
    else:
        text = "\n".join(f"{m.get('role', '?')}: {content_text(m.get('content'))}" for m in prompt.messages or ())
        if prompt.prefill:
            text += f"\nassistant: {prompt.prefill}"
    cut = limit is not None and len(text) > limit
    return {"text": text[:limit] if cut else text, "chars": len(text), "truncated": cut}


def _parent(before: list[CandidateTrace], index: int | None) -> CandidateTrace | None:
    return before[index] if index is not None and 0 <= index < len(before) else None


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


# --- reading traces back (w2s view) -------------------------------------------------


def traces_in(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, trace) for every trace in a file: a trace, a response body carrying one
    under "w2s", or JSONL of either or of batch output records. The page reads files
    the same way (proxy/server/ui/trace.js)."""
    try:
        docs = [(None, json.loads(text))]
    except json.JSONDecodeError:
        docs = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    docs.append((n, json.loads(line)))
                except json.JSONDecodeError:
                    continue
    for n, doc in docs:
        found = _trace_of(doc)
        if found is not None:
            label = doc.get("custom_id") or (f"line {n}" if n is not None else "trace")
            yield str(label), found


def _trace_of(doc: Any) -> dict[str, Any] | None:
    """`doc` itself, its "w2s" field (a response body), or its response body's (a batch record)."""
    for _ in range(3):
        if not isinstance(doc, dict):
            return None
        if isinstance(doc.get("rounds"), list) and "version" in doc:
            return doc
        response = doc.get("response")
        doc = doc.get("w2s") if "w2s" in doc else response.get("body") if isinstance(response, dict) else None
    return None
