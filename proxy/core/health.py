"""Upstream health: repeated failures put an upstream into a short cooldown.

A dead upstream costs every request its full retry budget (5 attempts, ~8 s)
before a 502. After `allowed_fails` consecutive failed calls (connection
errors, timeouts, 5xx: never a 4xx, which says nothing about the upstream's
health) the upstream cools down for `cooldown_seconds`: requests fail at once
with a 503 that says why and when it ends. The end of the cooldown, or a
successful probe during it, lets traffic back; one more failure right after
starts the next cooldown (the count is not reset until a call succeeds).

Pure state with injectable clocks; the provider layer (providers/health.py)
drives it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from w2s.proxy.core.errors import UpstreamError, UpstreamRefused, UpstreamUnavailable, W2SError


def counts_against_health(err: BaseException) -> bool:
    """Connection errors, timeouts and 5xx do; refusals (4xx) and bad requests do not."""
    if isinstance(err, UpstreamRefused) or not isinstance(err, UpstreamError):
        return False
    return err.upstream_status is None or err.upstream_status >= 500


@dataclass
class _Event:
    at: float  # wall clock, seconds since the epoch
    message: str = ""


class UpstreamHealth:
    def __init__(self, name: str, allowed_fails: int = 3, cooldown_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.name = name
        self.allowed_fails = allowed_fails
        self.cooldown_seconds = cooldown_seconds  # 0: never cool down
        self._clock, self._wall = clock, wall
        self.consecutive_failures = 0
        self.cooldowns = 0  # how many times it has cooled down
        self.last_success: _Event | None = None
        self.last_error: _Event | None = None
        self._until: float | None = None  # monotonic end of the current cooldown

    def seconds_left(self) -> float:
        if self._until is None:
            return 0.0
        left = self._until - self._clock()
        if left <= 0:
            self._until = None  # over: traffic may come back
            return 0.0
        return left

    @property
    def cooling_down(self) -> bool:
        return self.seconds_left() > 0

    def check(self) -> None:
        """UpstreamUnavailable (503) while cooling down."""
        left = self.seconds_left()
        if left > 0:
            last = self.last_error.message if self.last_error else "unknown"
            raise UpstreamUnavailable(
                f"upstream {self.name!r} is cooling down after {self.consecutive_failures} failed calls in a row "
                f"(last: {last}); it gets traffic again in {left:.0f} s "
                f"(upstreams.{self.name}.cooldown_seconds)", retry_after=left, provider=self.name)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._until = None
        self.last_success = _Event(self._wall())

    def record_failure(self, err: W2SError) -> bool:
        """Counts a failed call; True when it starts a cooldown."""
        if not counts_against_health(err):
            return False
        self.consecutive_failures += 1
        self.last_error = _Event(self._wall(), err.message)
        if self.cooldown_seconds > 0 and self.consecutive_failures >= self.allowed_fails and not self.cooling_down:
            self._until = self._clock() + self.cooldown_seconds
            self.cooldowns += 1
            return True
        return False

    def end_cooldown(self) -> None:
        """A probe succeeded: let traffic back before the cooldown ends."""
        self._until = None

    def snapshot(self) -> dict[str, Any]:
        left = self.seconds_left()
        return {
            "state": "cooling_down" if left > 0 else ("ok" if self.consecutive_failures == 0 else "failing"),
            "consecutive_failures": self.consecutive_failures,
            "cooldown_seconds_left": round(left, 1),
            "cooldowns": self.cooldowns,
            "last_success": _iso(self.last_success),
            "last_error": None if self.last_error is None else {"at": _iso(self.last_error),
                                                                 "message": self.last_error.message},
        }


def _iso(ev: _Event | None) -> str | None:
    if ev is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev.at))
