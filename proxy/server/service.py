"""What both APIs' handlers share: resolve a request, admit it, run its search, account.

`Service` is the app's one stateful object (engine + admission + metrics); the
handlers only translate between the wire and a `Job` (proxy/api/job.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable, TypeVar

from aiohttp import web
from pydantic import BaseModel

from w2s.proxy.api.job import Job, WireRequest, resolve
from w2s.proxy.api.results import now
from w2s.proxy.api.wire_errors import as_w2s_error
from w2s.proxy.core.config import ServerConfig
from w2s.proxy.core.errors import Draining, NotReady, UpstreamTimeout, W2SError
from w2s.proxy.core.types import RoundTrace, SearchResult
from w2s.proxy.server.admission import Admission
from w2s.proxy.server.metrics import ProxyMetrics
from w2s.proxy.server.recent import RecentSearches

if TYPE_CHECKING:
    from w2s.proxy.engine import Engine
    from w2s.proxy.server.sse import EventStream

log = logging.getLogger("w2s.server")

M = TypeVar("M", bound=BaseModel)
RoundHook = Callable[[RoundTrace, list[str]], Awaitable[None]]

ROUTE_KEY = web.RequestKey("w2s_route", str)  # the resolved route, for the metrics labels
SEARCH_ID = web.RequestKey("w2s_search_id", str)  # the finished search, when the recent searches keep it
DRAINING = "this server is shutting down and starts no new search; retry: another replica answers"


async def read_body(request: web.Request, model: type[M]) -> M:
    """Body -> validated wire model. 413, malformed JSON and bad fields raise;
    the error middleware turns them into the API's error shape."""
    raw = await request.read()  # HTTPRequestEntityTooLarge beyond client_max_size
    return model.model_validate_json(raw or b"")


class _DeadlinePassed(Exception):
    """server.request_timeout ran out (not some other timeout inside the search)."""


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class Service:
    def __init__(self, engine: Engine | None, server: ServerConfig, metrics: ProxyMetrics,
                 recent: RecentSearches | None = None):
        # None until built off the event loop (importing torch alone takes
        # seconds): see proxy.server.app._load.
        self.engine = engine
        self.server = server
        self.metrics = metrics
        self.recent = recent  # finished searches for the page (proxy/server/ui/); None: the page is off
        self.admission = Admission(server.max_concurrent_searches, server.max_queue)
        self.load_error: str | None = None  # set when the models failed to load
        self.draining = False  # SIGTERM: no new search starts here (proxy/server/drain.py)
        self.started_at = now()
        metrics.watch(self.admission, lambda: self.engine)

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.ready

    def loaded(self) -> Engine:
        """The engine, once every model is in; 503 (NotReady) before, and while draining."""
        if self.draining:
            raise Draining(DRAINING)
        if self.load_error is not None:
            raise NotReady(f"models failed to load: {self.load_error}", retryable=False)
        if self.engine is None or not self.engine.ready:
            raise NotReady("models are still loading; retry shortly")
        return self.engine

    def job(self, request: web.Request, req: WireRequest) -> Job:
        """Resolve the request (400 / 404) before any work; the route labels its metrics."""
        return resolve(self.loaded(), req, on_route=lambda name: request.__setitem__(ROUTE_KEY, name))

    async def run(self, job: Job, request: web.Request, on_round: RoundHook | None = None) -> SearchResult:
        """Admit, search, account. Spend is counted per round, so a search that
        is cancelled or fails half-way still shows what it cost."""
        engine = self.loaded()
        engine.check_upstream(job.plan)  # a cooling upstream fails fast, before taking a slot
        await engine.check_context(job.plan, job.prompt)  # a prompt that cannot fit: a 400 before a slot
        loop = asyncio.get_running_loop()
        t_queue = loop.time()
        async with self.admission.slot():
            self.metrics.queue_seconds.labels(route=job.route).observe(loop.time() - t_queue)
            t0 = loop.time()
            outcome = "error"
            try:
                result = await self._search(engine, job, on_round)
                outcome = "ok"
                self._keep(result, job, request)
                return result
            except _DeadlinePassed:
                outcome = "timeout"
                raise UpstreamTimeout(f"the search did not finish within {self.server.request_timeout:g} s "
                                      "(server.request_timeout)") from None
            except asyncio.CancelledError:
                outcome = "cancelled"  # the client went away: aiohttp cancelled the handler
                raise
            except ConnectionResetError:
                # A stream write finds the client gone before aiohttp's cancel lands.
                outcome = "cancelled" if client_gone(request) else outcome
                raise
            finally:
                self.metrics.search_done(job.route, job.mode, outcome, loop.time() - t0)

    def _keep(self, result: SearchResult, job: Job, request: web.Request) -> None:
        search_id = self.recent.add(result, job) if self.recent is not None else None
        if search_id is not None:
            request[SEARCH_ID] = search_id

    async def _search(self, engine: Engine, job: Job, on_round: RoundHook | None) -> SearchResult:
        """The search under server.request_timeout (_DeadlinePassed when that deadline passes)."""
        async def counted(trace: RoundTrace, kept: list[str]) -> None:
            self.metrics.round_done(job.route, trace)
            if on_round is not None:
                await on_round(trace, kept)

        deadline = asyncio.timeout(self.server.request_timeout)
        try:
            async with deadline:
                return await engine.run(job.plan, job.prompt, on_round=counted)
        except TimeoutError:
            if deadline.expired():
                raise _DeadlinePassed() from None
            raise  # someone else's timeout: an error like any other

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
            self.metrics.errors.labels(type=err.type, status=str(err.status)).inc()
            await send_error(err)
            await sse.finish()
            return None


SERVICE = web.AppKey("w2s_service", Service)


def stats_headers(result: SearchResult | None, job: Job) -> dict[str, str]:
    """x-w2s-* headers: the mode and route, and once the search is done, what it spent."""
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
        "x-w2s-lost-draws": str(result.lost_draws),  # planned draws that failed: fewer candidates than planned
    })
    h["x-w2s-upstream-cached-tokens"] = str(result.upstream_cached_tokens)  # of the prompt tokens
    h["x-w2s-upstream-cache-write-tokens"] = str(result.upstream_cache_write_tokens)
    if result.cost_usd is not None:
        h["x-w2s-cost-usd"] = f"{result.cost_usd:.8f}"  # the upstream's prices x its tokens (docs/cost.md)
    if result.budget_exhausted:
        h["x-w2s-budget-exhausted"] = "true"
    return h
