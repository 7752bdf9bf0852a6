"""The page's routes: its static files (open: they hold no data) and /ui/api/ (behind server.api_keys).

    GET  /ui                     index.html
    GET  /ui/assets/{name}       trace.js, tree.js, app.js, style.css
    GET  /ui/api/info            the routes, this replica, what the recent searches keep
    GET  /ui/api/searches        the recent searches, newest first (summaries)
    GET  /ui/api/searches/{id}   one recent search's trace
    POST /ui/api/search          the playground: runs a search, streams each round (SSE)

The playground streams `event: round` as each round finishes (a round of the
trace, proxy/api/trace.py), then `event: done` {"search_id", "trace"}. A failure
before the first round is a plain HTTP error; after it, `event: error` with the
OpenAI error body. The page sends the API key in a header, never in a URL.
"""
from __future__ import annotations

from aiohttp import web

from w2s.proxy.api.protocol_ui import PlaygroundRequest
from w2s.proxy.api.trace import TRACE_VERSION, round_body, trace_body
from w2s.proxy.api.wire_errors import openai_body
from w2s.proxy.core.config import UIConfig
from w2s.proxy.core.errors import NotFound, W2SError
from w2s.proxy.core.types import RoundTrace
from w2s.proxy.server.recent import RecentSearches
from w2s.proxy.server.service import SEARCH_ID, SERVICE, Service, read_body, stats_headers
from w2s.proxy.server.sse import EventStream
from w2s.proxy.server.ui import asset_bytes

API_PREFIX = "/ui/api/"
ASSETS = {  # file -> content type; the page is exactly these files
    "index.html": "text/html",
    "style.css": "text/css",
    "trace.js": "text/javascript",
    "tree.js": "text/javascript",
    "app.js": "text/javascript",
}
# The page talks to this server only, and nothing may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
FILES = web.AppKey("w2s_ui_files", dict)


def recent_searches(ui: UIConfig) -> RecentSearches | None:
    """The ring buffer the page reads; None when the page is off (nothing to keep for)."""
    if not ui.enabled:
        return None
    return RecentSearches(ui.recent_searches, int(ui.recent_max_mb * 2**20), ui.prompt_chars)


def add_routes(app: web.Application) -> None:
    app[FILES] = {name: asset_bytes(name) for name in ASSETS}  # read once: they ship in the wheel
    r = app.router
    r.add_get("/ui", page)
    r.add_get("/ui/", page)
    r.add_get("/ui/assets/{name}", asset)
    r.add_get(API_PREFIX + "info", info)
    r.add_get(API_PREFIX + "searches", searches)
    r.add_get(API_PREFIX + "searches/{id}", one_search)
    r.add_post(API_PREFIX + "search", playground)


async def page(request: web.Request) -> web.Response:
    return _file(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "index.html" or name not in ASSETS:
        raise NotFound(f"no such asset: {name}", code="unknown_url")
    return _file(request, name)


def _file(request: web.Request, name: str) -> web.Response:
    return web.Response(body=request.app[FILES][name], content_type=ASSETS[name], charset="utf-8",
                        headers=SECURITY_HEADERS)


# --- data -------------------------------------------------------------------------


async def info(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE]
    recent = svc.recent
    engine = svc.engine if svc.ready else None
    routes = []
    for i in engine.routes() if engine is not None else []:
        s = i.config.search
        routes.append({"name": i.name, "mode": i.mode, "description": i.config.description,
                       "default": i.name == engine.config.default_route,
                       "search": {"w": s.w, "k": s.k, "l": s.l, "max_tokens": s.max_tokens}})
    return web.json_response({
        "ready": engine is not None,
        "load_error": svc.load_error,
        "routes": routes,
        "replica": recent.replica,
        "trace_version": TRACE_VERSION,
        "recent": {"capacity": recent.capacity, "prompt_chars": recent.prompt_chars},
    })


async def searches(request: web.Request) -> web.Response:
    recent = request.app[SERVICE].recent
    return web.json_response({"replica": recent.replica, "capacity": recent.capacity,
                              "searches": recent.summaries()})


async def one_search(request: web.Request) -> web.Response:
    recent = request.app[SERVICE].recent
    search_id = request.match_info["id"]
    raw = recent.trace(search_id)
    if raw is None:
        raise NotFound(f"no recent search {search_id!r} on this replica (it keeps the last {recent.capacity})",
                       code="search_not_found")
    return web.Response(body=raw, content_type="application/json")


# --- the playground ---------------------------------------------------------------


async def playground(request: web.Request) -> web.StreamResponse:
    """The API's search (Service.run: admission, timeout, metrics, recent), streamed round by round."""
    svc: Service = request.app[SERVICE]
    job = svc.job(request, await read_body(request, PlaygroundRequest))
    sse = EventStream(request, stats_headers(None, job))
    previous: RoundTrace | None = None

    async def on_round(trace: RoundTrace, kept: list[str]) -> None:
        nonlocal previous
        await sse.send(round_body(trace, previous), event="round")
        previous = trace

    async def send_error(err: W2SError) -> None:
        await sse.send(openai_body(err), event="error")

    result = await svc.run_streamed(job, request, sse, on_round, send_error)
    if result is None:
        return sse.response
    await sse.send({"search_id": request.get(SEARCH_ID), "trace": trace_body(result, job)}, event="done")
    return await sse.finish()
