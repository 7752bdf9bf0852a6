"""Does an upstream really continue a partial answer? A deterministic probe, run before CBS relies on it.

Some OpenAI-compatible servers answer a trailing assistant message with a new
turn instead of continuing it; CBS over such an upstream stitches restarts
together ("...to see theThe movie was amazing"). The probe asks, at temperature
0, to continue a count that ends mid-number: "1, 2, ..., 8, 9, 1". Only a real
continuation can start with "0" (the rest of "10"); a fresh answer starts over.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from w2s.proxy.core.types import Continuation, Prompt, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers")

PROMPT = Prompt.chat([{"role": "user", "content": "Count from 1 to 30, separated by commas."}])
PREFIX = "1, 2, 3, 4, 5, 6, 7, 8, 9, 1"
PROBE = SampleRequest(PROMPT, [Continuation(PREFIX, 4)], temperature=0.0)

Draw = Callable[[SampleRequest], Awaitable[SampleResult]]


def judge(text: str) -> tuple[bool, str]:
    """(whether `text` continues the probe's count, the start of `text` quoted)."""
    return text.startswith("0"), repr(text[:40])


class ContinuationCheck:
    """Runs the probe once, on first need, and remembers the verdict."""

    def __init__(self, label: str):
        self.label = label
        self.state = "unverified"  # unverified | verified | failed
        self.detail = ""
        self._lock = asyncio.Lock()

    async def ensure(self, draw: Draw) -> bool:
        """True when the upstream continues; an unreachable upstream raises (and stays unverified)."""
        async with self._lock:
            if self.state == "unverified":
                result = await draw(PROBE)
                ok, wrote = judge(result.chunks[0].text)  # (a failed draw raised: it stays unverified)
                self.state = "verified" if ok else "failed"
                self.detail = (f"continued {PREFIX[-8:]!r} with {wrote}" if ok else
                               f"asked to continue {PREFIX[-8:]!r} at temperature 0, it wrote {wrote}: "
                               "a new answer, not a continuation")
                (log.info if ok else log.warning)("%s continuation probe: %s", self.label, self.detail)
        return self.state == "verified"
