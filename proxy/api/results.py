"""What a finished search tells the client, whatever the API: ids and usage.

The trace, its other part, has its own module: proxy/api/trace.py.
"""
from __future__ import annotations

import time
import uuid

from w2s.proxy.api.job import Job
from w2s.proxy.core.types import RoundTrace, SearchResult


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
