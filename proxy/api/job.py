"""A request, resolved once: what both the HTTP server and batch files run.

A wire request (proxy/api/protocol_*.py) becomes a `Job`: the engine's `Plan`
(route, planned mode, validated SearchParams), the prompt, and whether the
client asked for the trace. Checks run cheapest first: unsupported fields
(400), the route (404), the search overrides (400); nothing runs before all
of them pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from w2s.proxy.api import w2s_options
from w2s.proxy.core.modes import SearchMode
from w2s.proxy.core.types import Prompt, SearchParams

if TYPE_CHECKING:  # the engine imports torch: seconds a remote batch run never needs
    from w2s.proxy.engine import Engine, Plan


class WireRequest(Protocol):
    """What every protocol request model offers (OpenAI chat and completions, Anthropic messages)."""

    model: str | None
    w2s: dict[str, Any] | None

    def check_supported(self) -> None: ...

    def to_prompt(self) -> Prompt: ...

    def search_overrides(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Job:
    plan: Plan
    prompt: Prompt
    trace: bool  # the client asked for the full search trace
    # The `w2s` field carries the cost (w2s.cost: true; always for a stream, whose headers went out first).
    cost: bool = False

    @property
    def route(self) -> str:
        return self.plan.name  # what responses call the model

    @property
    def mode(self) -> SearchMode:
        return self.plan.mode

    @property
    def params(self) -> SearchParams:
        return self.plan.params

    @property
    def first_round_draws(self) -> int:
        return max(self.params.w, self.params.n) * self.params.k


def resolve(engine: Engine, req: WireRequest, on_route: Callable[[str], None] | None = None) -> Job:
    """`on_route` hears the route's name as soon as it is known (the server labels its metrics with it)."""
    req.check_supported()
    trace = w2s_options.trace(req.w2s)
    cost = w2s_options.cost(req.w2s) or _stream_ends_with_data(req)
    route = engine.route_info(req.model)
    if on_route is not None:
        on_route(route.name)
    prompt = req.to_prompt()
    return Job(engine.plan_prompt(route, req.search_overrides(), prompt), prompt, trace, cost)


def _stream_ends_with_data(req: WireRequest) -> bool:
    """Whether a stream's last event carries the cost. Anthropic's and the Responses API's final events
    carry data anyway; an OpenAI chat/completions stream ends with a chunk without choices only for a
    client that asked for one (stream_options.include_usage), as OpenAI's own does: code that reads
    `chunk.choices[0]` on every chunk must not break (w2s.cost: true asks for it too)."""
    if not getattr(req, "stream", False):
        return False
    include_usage = getattr(req, "include_usage", None)  # OpenAI's request models only
    return True if include_usage is None else bool(include_usage)
