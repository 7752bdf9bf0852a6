"""What both APIs' handlers share: parse a body, admit, run a search, account.

`Service` is the app's one stateful object (engine + admission + metrics); the
handlers only translate between the wire and a `Job`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from aiohttp import web
from pydantic import BaseModel

from proxy.admission import Admission
from proxy.config import ServerConfig
from proxy.errors import NotReady, UpstreamTimeout, W2SError
from proxy.metrics import ProxyMetrics
from proxy.types import Prompt, RoundTrace, SearchParams, SearchResult
from proxy.wire_errors import as_w2s_error

if TYPE_CHECKING:
    from proxy.engine import Engine
    from proxy.sse import EventStream

log = logging.getLogger("w2s.server")

M = TypeVar("M", bound=BaseModel)
RoundHook = Callable[[RoundTrace, list[str]], Awaitable[None]]

ROUTE_KEY = web.RequestKey("w2s_route", str)  # the resolved route, for the metrics labels


@dataclass
class Job:
    route: str  # resolved route name (what responses call the model)
    mode: str  # passthrough | cbs | bon | bon-approx | sample
    prompt: Prompt
    params: SearchParams
    trace: bool  # the client asked for the full search trace

    @property
    def first_round_draws(self) -> int:
        return max(self.params.w, self.params.n) * self.params.k


async def read_body(request: web.Request, model: type[M]) -> M:
    """Body -> validated wire model. 413, malformed JSON and bad fields raise;
    the error middleware turns them into the API's error shape."""
    raw = await request.read()  # HTTPRequestEntityTooLarge beyond client_max_size
    return model.model_validate_json(raw or b"")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class Service:
    def __init__(self, engine: Engine | None, server: ServerConfig, metrics: ProxyMetrics):
        # None until built off the event loop (importing torch alone takes
        # seconds): see proxy.server._load.
        self.engine = engine
        self.server = server
        self.metrics = metrics
        self.admission = Admission(server.max_concurrent_searches, server.max_queue)
        self.load_error: str | None = None  # set when the models failed to load
        self.started_at = now()
        metrics.add_live(self.admission, lambda: self.engine)

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.ready

    def loaded(self) -> Engine:
        """The engine, once every model is in; 503 (NotReady) before."""
        if self.load_error is not None:
            raise NotReady(f"models failed to load: {self.load_error}", retryable=False)
        if self.engine is None or not self.engine.ready:
            raise NotReady("models are still loading; retry shortly")
        return self.engine

    def job(self, request: web.Request, model: str | None, prompt: Prompt,
            overrides: dict[str, Any], trace: bool) -> Job:
        """Resolve the route (404) and the search params (400) before any work."""
        engine = self.loaded()
        info = engine.route_info(model)
        request[ROUTE_KEY] = info.name
        params = engine.params_for(info.name, overrides)
        return Job(info.name, info.mode, prompt, params, trace)

    async def run(self, job: Job, request: web.Request, on_round: RoundHook | None = None) -> SearchResult:
        """Admit, search, account. Spend is counted per round, so a search that
        is cancelled or fails half-way still shows what it cost."""
        engine = self.loaded()
        m, route = self.metrics, job.route
        loop = asyncio.get_running_loop()
        t_queue = loop.time()
        async with self.admission.slot():
            m.queue_seconds.observe(loop.time() - t_queue, route=route)
            t0 = loop.time()
            outcome = "error"

            async def counted(trace: RoundTrace, kept: list[str]) -> None:
                m.rounds.inc(route=route)
                m.upstream_calls.inc(trace.upstream_calls, route=route)
                m.upstream_tokens.inc(trace.upstream_prompt_tokens, route=route, kind="prompt")
                m.upstream_tokens.inc(trace.upstream_completion_tokens, route=route, kind="completion")
                m.scorer_tokens.inc(trace.scorer_tokens, route=route)
                if on_round is not None:
                    await on_round(trace, kept)

            deadline = asyncio.timeout(self.server.request_timeout)
            try:
                async with deadline:
                    result = await engine.run(route, job.prompt, on_round=counted, params=job.params)
                outcome = "ok"
                return result
            except TimeoutError:
                if not deadline.expired():
                    raise  # someone else's timeout: an error like any other
                outcome = "timeout"
                raise UpstreamTimeout(f"the search did not finish within {self.server.request_timeout:g} s "
                                      "(server.request_timeout)") from None
            except asyncio.CancelledError:
                outcome = "cancelled"  # the client went away: aiohttp cancelled the handler
                m.cancelled.inc(route=route)
                raise
            except ConnectionResetError:
                # A stream write finds the client gone before aiohttp's cancel lands.
                if client_gone(request):
                    outcome = "cancelled"
                    m.cancelled.inc(route=route)
                raise
            finally:
                m.searches.inc(route=route, mode=job.mode, outcome=outcome)
                m.search_seconds.observe(loop.time() - t0, route=route, mode=job.mode)

    async def run_streamed(self, job: Job, request: web.Request, sse: "EventStream", on_round: RoundHook,
                           send_error: Callable[[W2SError], Awaitable[None]]) -> SearchResult | None:
        """`run` for a streamed response. An error before the first event is raised (a plain
        HTTP error with its real status); after it, `send_error` writes it as the API's error
        event and the stream ends. None: the stream is over (that, or the client is gone)."""
        try:
            return await self.run(job, request, on_round)
        except Exception as e:
            if isinstance(e, ConnectionResetError) and client_gone(request):
                return None  # nobody left to tell
            if not sse.started:
                raise
            err = as_w2s_error(e)
            self.metrics.errors.inc(type=err.type, status=str(err.status))
            await send_error(err)
            await sse.finish()
            return None


SERVICE = web.AppKey("w2s_service", Service)


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# --- what a finished search tells the client -----------------------------------


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


def stats_headers(result: SearchResult | None, job: Job) -> dict[str, str]:
    h = {"x-w2s-mode": result.mode if result is not None else job.mode, "x-w2s-route": job.route}
    if result is None:
        return h
    h.update({
        "x-w2s-rounds": str(len(result.rounds)),
        "x-w2s-upstream-calls": str(result.upstream_calls),
        "x-w2s-upstream-tokens": str(result.upstream_prompt_tokens + result.upstream_completion_tokens),
        "x-w2s-upstream-prompt-tokens": str(result.upstream_prompt_tokens),
        "x-w2s-upstream-completion-tokens": str(result.upstream_completion_tokens),
        "x-w2s-scorer-tokens": str(result.scorer_tokens),
    })
    if result.budget_exhausted:
        h["x-w2s-budget-exhausted"] = "true"
    return h


def trace_body(result: SearchResult) -> dict[str, Any]:
    """The whole search, for `"w2s": {"trace": true}`. Non-finite scores become null (JSON has no inf)."""
    return _finite({
        "mode": result.mode,
        "upstream_calls": result.upstream_calls,
        "upstream_prompt_tokens": result.upstream_prompt_tokens,
        "upstream_completion_tokens": result.upstream_completion_tokens,
        "scorer_tokens": result.scorer_tokens,
        "budget_exhausted": result.budget_exhausted,
        "answers": [dataclasses.asdict(a) for a in result.answers],
        "rounds": [dataclasses.asdict(r) for r in result.rounds],
    })


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def suffix_after(text: str, sent: str) -> str:
    """What is left of `text` to stream after `sent` went out.

    Kept beams only ever grow, so the best answer starts with the committed
    prefix already sent. The one exception is an upstream found mid-search to
    be unable to continue a prefix (its chunks become fresh whole answers):
    nothing sent can be taken back, so the rest is the part past the sent
    length, and the log says the stream diverged.
    """
    if not text.startswith(sent):
        log.warning("streamed prefix is not a prefix of the final answer (upstream lost exact continuation)")
    return text[len(sent):]
