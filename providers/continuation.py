"""Does an upstream really continue a partial answer? A deterministic probe, run before CBS relies on it.

Some OpenAI-compatible servers answer a trailing assistant message with a new
turn instead of continuing it; CBS over such an upstream stitches restarts
together ("...to see theThe movie was amazing"). The probe asks, at temperature
0, to count from 1 to 30 and hands over a partial answer that starts mid-count
and ends mid-number: "11, 12, ..., 19, 2". Only a real continuation can start
with "0" (the rest of "20"); a fresh answer starts over at "1". A server whose
reply repeats the partial answer before continuing ("11, 12, ..., 19, 20") is
told apart from a fresh answer because no fresh answer starts at 11: such a
server continues, and the repeat is cut from its draws. The stop string ", 21"
ends every kind of reply within a few tokens.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from w2s.proxy.core.types import Continuation, Prompt, SampleRequest, SampleResult

log = logging.getLogger("w2s.providers")

PROMPT = Prompt.chat([{"role": "user", "content": "Count from 1 to 30, separated by commas."}])
PREFIX = "11, 12, 13, 14, 15, 16, 17, 18, 19, 2"
STOP = ", 21"
PROBE = SampleRequest(PROMPT, [Continuation(PREFIX, 40)], temperature=0.0, stop=(STOP,))

Draw = Callable[[SampleRequest], Awaitable[SampleResult]]


@dataclass
class Outcome:
    """One probe's verdict and what it cost upstream."""

    ok: bool  # the upstream continued the partial answer
    detail: str
    repeats: bool = False  # its reply repeated the partial answer first
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    style: str | None = None  # chat-continue: the way of marking the partial answer that worked

    def cost(self) -> str:
        return f"{self.calls} call(s), {self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"

    def add_cost(self, other: "Outcome") -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


def judge(text: str) -> Outcome:
    """Whether `text` (the reply to PROBE) continues the count, repeats it first, or starts over."""
    wrote = repr(text[:40])
    if text.startswith("0"):
        return Outcome(True, f"continued {PREFIX[-6:]!r} with {wrote}")
    if text.startswith(PREFIX) and text[len(PREFIX):].startswith("0"):
        return Outcome(True, f"repeated the partial answer, then continued it ({wrote}): the repeat is cut "
                             "from every draw", repeats=True)
    return Outcome(False, f"asked to continue {PREFIX[-6:]!r} at temperature 0, it wrote {wrote}: a new "
                          "answer, not a continuation")


async def probe_once(draw: Draw) -> Outcome:
    """PROBE through `draw` (the sampler's own continuation path), judged, with its cost."""
    result = await draw(PROBE)
    chunk = result.chunks[0]  # (a failed draw raised)
    out = judge(chunk.text)
    out.calls, out.prompt_tokens, out.completion_tokens = result.calls, chunk.prompt_tokens, chunk.completion_tokens
    return out


class ContinuationCheck:
    """Runs a probe once, on first need, and remembers the verdict."""

    def __init__(self, label: str):
        self.label = label
        self.state = "unverified"  # unverified | verified | failed
        self.detail = ""
        self.outcome: Outcome | None = None
        self._lock = asyncio.Lock()

    async def ensure(self, probe: Callable[[], Awaitable[Outcome]]) -> bool:
        """True when the upstream continues; an unreachable upstream raises (and stays unverified)."""
        async with self._lock:
            if self.state == "unverified":
                out = await probe()
                self.outcome = out
                self.state = "verified" if out.ok else "failed"
                self.detail = out.detail
                (log.info if out.ok else log.warning)("%s continuation probe: %s (cost: %s)", self.label,
                                                      self.detail, out.cost())
        return self.state == "verified"

    def report(self) -> dict:
        """What /v1/models, /health and the trace show of it."""
        out = {"continuation": self.state}
        if self.outcome is not None:
            out["probe_cost"] = {"calls": self.outcome.calls, "prompt_tokens": self.outcome.prompt_tokens,
                                 "completion_tokens": self.outcome.completion_tokens}
            if self.outcome.repeats:
                out["repeats_prefix"] = True
        return out
