"""Recent searches: a bounded ring buffer of finished searches' traces, for the page.

Per server process, in memory only: replicas behind a load balancer each keep
their own, and the page says which one it reads (`replica`). Bounded twice: at
most `capacity` searches and `max_bytes` of trace JSON, the oldest dropped
first; a trace larger than the whole budget is not kept. Each trace carries
the prompt cut to `prompt_chars` and nothing from the request's headers, so
no API key can reach it. `capacity` 0 keeps nothing.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id
from w2s.proxy.api.trace import trace_body
from w2s.proxy.core.types import SearchResult

PREVIEW_CHARS = 120  # of the answer, in the list


@dataclass(frozen=True)
class Kept:
    summary: dict[str, Any]  # what the list shows
    trace: bytes  # the trace body as JSON, served as is


class RecentSearches:
    def __init__(self, capacity: int, max_bytes: int, prompt_chars: int):
        self.capacity, self.max_bytes, self.prompt_chars = capacity, max_bytes, prompt_chars
        self.replica = f"{socket.gethostname()} pid {os.getpid()}"
        self._items: OrderedDict[str, Kept] = OrderedDict()  # oldest first
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def add(self, result: SearchResult, job: Job) -> str | None:
        """Keep a finished search -> its id (None: nothing kept)."""
        if not self.enabled:
            return None
        trace = trace_body(result, job, self.prompt_chars)
        raw = json.dumps(trace, ensure_ascii=False, separators=(",", ":")).encode()
        if len(raw) > self.max_bytes:
            return None
        search_id = new_id("search_")
        self._items[search_id] = Kept(_summary(search_id, trace), raw)
        self._bytes += len(raw)
        while len(self._items) > self.capacity or self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old.trace)
        return search_id

    def summaries(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [k.summary for k in reversed(self._items.values())]

    def trace(self, search_id: str) -> bytes | None:
        kept = self._items.get(search_id)
        return kept.trace if kept is not None else None

    def __len__(self) -> int:
        return len(self._items)


def _summary(search_id: str, trace: dict[str, Any]) -> dict[str, Any]:
    best = trace["answers"][0] if trace["answers"] else {"text": "", "score": None}
    return {
        "id": search_id,
        "created": time.time(),
        "route": trace["route"],
        "mode": trace["mode"],
        "prompt": trace["prompt"]["text"],
        "prompt_truncated": trace["prompt"]["truncated"],
        "answer": best["text"][:PREVIEW_CHARS],
        "score": best["score"],
        "rounds": len(trace["rounds"]),
        "upstream_tokens": trace["upstream_prompt_tokens"] + trace["upstream_completion_tokens"],
    }
