"""What a finished search tells the client, whatever the API: ids, usage, the trace.

The trace (`"w2s": {"trace": true}`, `w2s generate --json`) is versioned: a
consumer checks `version` before reading it. Without the trace, a response
still carries a small `w2s` field whenever the search degraded (draws lost,
an upstream worked around): never silently.
"""
from __future__ import annotations

import dataclasses
import math
import time
import uuid
from typing import Any

from proxy.api.job import Job
from proxy.core.types import RoundTrace, SearchResult

TRACE_VERSION = 1


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def prompt_tokens(first_round: RoundTrace | None, job: Job) -> int:
    """The prompt's upstream tokens, as if asked once.

    Round one reads the bare prompt once per draw, so its prompt tokens divided
    by its successful draws is the prompt's own length; what the search spent
    in all (prefixes re-read every round) is in the x-w2s-* headers.
    """
    if first_round is None:
        return 0
    draws = max(1, job.first_round_draws - first_round.failed_chunks)
    return round(first_round.upstream_prompt_tokens / draws)


def usage_counts(result: SearchResult, job: Job) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) for the usage block: the answers returned."""
    completion = sum(a.completion_tokens for a in result.answers)
    return prompt_tokens(result.rounds[0] if result.rounds else None, job), completion


def trace_body(result: SearchResult, job: Job) -> dict[str, Any]:
    """The whole search. Non-finite scores become null (JSON has no inf)."""
    return _finite({
        "version": TRACE_VERSION,
        "route": job.route,
        "mode": result.mode,
        "params": dataclasses.asdict(job.params),
        "upstream_calls": result.upstream_calls,
        "upstream_prompt_tokens": result.upstream_prompt_tokens,
        "upstream_completion_tokens": result.upstream_completion_tokens,
        "scorer_tokens": result.scorer_tokens,
        "budget_exhausted": result.budget_exhausted,
        "lost_draws": result.lost_draws,
        "notes": list(result.notes),
        "answers": [dataclasses.asdict(a) for a in result.answers],
        "rounds": [dataclasses.asdict(r) for r in result.rounds],
    })


def summary(result: SearchResult) -> dict[str, Any] | None:
    """What went less than planned, when something did: draws lost, upstream workarounds, a fallback."""
    if not (result.lost_draws or result.notes):
        return None
    return {"mode": result.mode, "lost_draws": result.lost_draws, "notes": list(result.notes)}


def w2s_field(result: SearchResult, job: Job) -> dict[str, Any] | None:
    """The response's `w2s` field: the whole trace when asked for, else the summary (or nothing)."""
    return trace_body(result, job) if job.trace else summary(result)


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
