"""Stored responses (the Responses API's `store`, on by default as at OpenAI).

Per server process, in memory only: bounded by count (`responses.store_size`,
the oldest dropped first) and by age (`responses.store_seconds`). A replica
behind a load balancer knows only its own, so `previous_response_id` and
`GET /v1/responses/{id}` need sticky sessions there, or the client sends the
whole `input` each turn (docs/apis.md). An unknown, evicted or expired id is
a 404 naming it.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from w2s.proxy.core.config import ResponsesConfig
from w2s.proxy.core.errors import NotFound


@dataclass(frozen=True)
class Stored:
    body: dict[str, Any]  # the response object as returned (GET returns it)
    conversation: tuple[dict, ...]  # every turn up to and including its answer; instructions apart
    at: float


class ResponseStore:
    def __init__(self, cfg: ResponsesConfig, clock: Callable[[], float] = time.monotonic):
        self.size, self.seconds, self.clock = cfg.store_size, cfg.store_seconds, clock
        self._items: OrderedDict[str, Stored] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        self._expire()
        return len(self._items)

    def put(self, resp_id: str, body: dict[str, Any], conversation: list[dict]) -> None:
        if self.size == 0:
            return
        self._items[resp_id] = Stored(body, tuple(conversation), self.clock())
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, resp_id: str, param: str | None = None) -> Stored:
        self._expire()
        got = self._items.get(resp_id)
        if got is None:
            raise NotFound(f"Response with id {resp_id!r} not found (never stored here, evicted, or older than "
                           f"{self.seconds:g} s; behind a load balancer: another replica's)", param=param,
                           code="response_not_found")
        return got

    def delete(self, resp_id: str) -> None:
        self.get(resp_id)
        del self._items[resp_id]

    def _expire(self) -> None:
        cutoff = self.clock() - self.seconds
        while self._items and next(iter(self._items.values())).at < cutoff:
            self._items.popitem(last=False)
