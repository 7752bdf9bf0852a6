"""A health guard around any upstream: fail fast while it cools down, probe it back.

The guard is itself a Sampler: the search and the engine see it instead of the
provider. Every failed call (proxy/core/health.py says which count) goes to the
upstream's `UpstreamHealth`; a cooldown fails later calls at once with a 503.
While cooling down, the guard probes the upstream (a cheap `probe()`, e.g. GET
/v1/models) every few seconds, and a success lets traffic back early.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from w2s.proxy.core.context import TokenCount
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.health import UpstreamHealth
from w2s.proxy.core.interfaces import Sampler
from w2s.proxy.core.types import Prompt, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers.health")

PROBE_TIMEOUT = 10.0


class HealthGuard:
    def __init__(self, inner: Sampler, health: UpstreamHealth):
        self.inner = inner
        self.health = health
        self.name = inner.name
        self.model_names = inner.model_names
        # Probe a few times per cooldown, at most every 5 s.
        self.probe_interval = max(0.2, min(5.0, health.cooldown_seconds / 4))
        self._probing: asyncio.Task | None = None

    @property
    def exact_continuation(self) -> bool:  # may change at run time (a prefill refusal found)
        return self.inner.exact_continuation

    async def start(self) -> None:
        await self.inner.start()

    def capabilities(self) -> dict:
        return self.inner.capabilities()

    @property
    def context_tokens(self) -> int | None:
        """The upstream's context when known (proxy/core/context.py); None for parts that say nothing."""
        return getattr(self.inner, "context_tokens", None)

    async def count_prompt(self, prompt: Prompt, bound: int | None) -> TokenCount | None:
        """The upstream's count of the prompt's tokens; None when it cannot count."""
        count = getattr(self.inner, "count_prompt", None)
        return None if count is None else await count(prompt, bound)

    async def prepare(self, continuation: bool) -> None:
        self.health.check()
        try:
            await self.inner.prepare(continuation)  # may probe the upstream: a failed call like any other
        except W2SError as e:
            self._failed(e)
            raise

    async def sample(self, request: SampleRequest) -> SampleResult:
        self.health.check()
        try:
            out = await self.inner.sample(request)
        except W2SError as e:
            self._failed(e)
            raise
        self.health.record_success()  # the upstream answered (some draws may still have failed)
        return out

    def _failed(self, e: W2SError) -> None:
        if self.health.record_failure(e):
            log.warning("upstream %r: %d failed calls in a row; cooling down for %g s (last: %s)",
                        self.name, self.health.consecutive_failures, self.health.cooldown_seconds, e.message)
            self._start_probing()

    def _start_probing(self) -> None:
        probe = getattr(self.inner, "probe", None)
        if probe is None or (self._probing is not None and not self._probing.done()):
            return
        self._probing = asyncio.get_running_loop().create_task(self._probe_until_back(probe),
                                                               name=f"w2s-probe-{self.name}")

    async def _probe_until_back(self, probe) -> None:
        while self.health.cooling_down:
            await asyncio.sleep(self.probe_interval)
            if not self.health.cooling_down:
                return
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except Exception as e:  # still down: the cooldown runs on
                log.debug("upstream %r probe failed: %s", self.name, type(e).__name__)
                continue
            log.warning("upstream %r answered a probe: cooldown over", self.name)
            self.health.end_cooldown()
            return

    async def aclose(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
        await self.inner.aclose()
