"""The one small async interface every upstream implements."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from proxy.types import SampleRequest, SampleResult


@runtime_checkable
class Sampler(Protocol):
    name: str
    # True when the upstream continues a partial answer exactly (CBS possible).
    # False: only whole answers can be drawn, so the search degrades to guided
    # Best-of-N and says so.
    exact_continuation: bool

    async def sample(self, request: SampleRequest) -> SampleResult:
        """One chunk per continuation, in order.

        A failed continuation comes back as a Chunk with `error` set; when every
        one fails the sampler raises `proxy.errors.UpstreamError`.
        """
        ...

    async def aclose(self) -> None: ...
