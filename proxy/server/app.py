"""The HTTP server: app factory, middlewares, lifecycle, `serve()`.

    create_app(config, engine=None) -> web.Application
    serve(config, host, port)       blocking, what `w2s serve` runs

The models load in the background on startup, so /health answers at once and
/ready (and the API endpoints) flip when they are in. No module globals: all
state hangs off the app (see `proxy.server.service.Service`).

Client disconnects cancel the handler task (aiohttp's handler_cancellation,
off by default since aiohttp 3.8, is turned on by `serve` and `start`), which
cancels the search and with it every upstream call still to come.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import sys
from typing import TYPE_CHECKING, AsyncIterator

from aiohttp import web

from w2s.proxy.api.wire_errors import api_for_path
from w2s.proxy.core.config import Config
from w2s.proxy.core.config_load import resolve_secret
from w2s.proxy.core.errors import AuthError, W2SError
from w2s.proxy.server import handlers_anthropic, handlers_openai, handlers_responses
from w2s.proxy.server.http_errors import as_w2s_error, error_response
from w2s.proxy.server.metrics import CONTENT_TYPE, ProxyMetrics
from w2s.proxy.server.response_store import ResponseStore
from w2s.proxy.server.service import ROUTE_KEY, SERVICE, Service
from w2s.proxy.server.ui import routes as ui_routes

if TYPE_CHECKING:
    from w2s.proxy.engine import Engine

log = logging.getLogger("w2s.server")

OWNS_ENGINE = web.AppKey("w2s_owns_engine", bool)
CONFIG = web.AppKey("w2s_config", Config)
API_KEYS = web.AppKey("w2s_api_keys", tuple)
LOADING = web.AppKey("w2s_loading", asyncio.Task)

# The endpoints a client must authenticate for; ops endpoints and the page's
# static files stay open (they expose no prompts, answers or secrets).
PROTECTED_PREFIXES = ("/v1/", ui_routes.API_PREFIX)


def create_app(config: Config, engine: Engine | None = None) -> web.Application:
    """An app serving `config`'s routes with `config.server`'s settings.

    Without `engine`, the app builds one off the event loop, loads it in the
    background and closes it on shutdown. An injected engine (tests, or one
    engine behind several apps) serves its own config's routes; it is started
    if not ready yet, and left open: its owner closes it.
    """
    owns = engine is None
    metrics = ProxyMetrics()
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[_errors_and_metrics, _auth],
    )
    app[SERVICE] = Service(engine, config.server, metrics, ui_routes.recent_searches(config.ui))
    app[OWNS_ENGINE] = owns
    app[CONFIG] = config
    app[handlers_responses.STORE] = ResponseStore(config.responses)  # this replica's stored responses
    # Resolved now: a missing os.environ/NAME key fails at startup, not per request.
    app[API_KEYS] = tuple(k for k in (resolve_secret(k) for k in config.server.api_keys) if k)
    app.cleanup_ctx.append(_engine_lifecycle)
    r = app.router
    r.add_post("/v1/chat/completions", handlers_openai.chat_completions)
    r.add_post("/v1/completions", handlers_openai.completions)
    r.add_get("/v1/models", handlers_openai.list_models)
    r.add_get("/v1/models/{model}", handlers_openai.get_model)
    r.add_post("/v1/messages", handlers_anthropic.messages)
    r.add_post("/v1/responses", handlers_responses.create)
    r.add_get("/v1/responses/{response_id}", handlers_responses.retrieve)
    r.add_delete("/v1/responses/{response_id}", handlers_responses.delete)
    r.add_get("/health", health)
    r.add_get("/ready", ready)
    r.add_get("/metrics", metrics_text)
    if config.ui.enabled:
        ui_routes.add_routes(app)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICE]
    task = None
    if not svc.ready:
        task = asyncio.get_running_loop().create_task(_load(svc, app[CONFIG]), name="w2s-load-models")
        app[LOADING] = task
    yield
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if app[OWNS_ENGINE] and svc.engine is not None:
        await svc.engine.aclose()


def _new_engine(config: Config) -> Engine:
    from w2s.proxy.engine import Engine  # imports torch: seconds, so off the event loop

    return Engine(config)


async def _load(svc: Service, config: Config) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        if svc.engine is None:
            svc.engine = await loop.run_in_executor(None, _new_engine, config)
        await svc.engine.start()
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the server stays up and says why on /ready
        svc.load_error = str(e) or type(e).__name__
        log.error("model loading failed: %s", svc.load_error, exc_info=not isinstance(e, W2SError))
        return
    log.info("models loaded in %.1f s; ready", loop.time() - t0)


# --- middlewares --------------------------------------------------------------


@web.middleware
async def _auth(request: web.Request, handler):
    keys = request.app[API_KEYS]
    if keys and request.path.startswith(PROTECTED_PREFIXES):
        given = _presented_key(request)
        if given is None:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                            code="missing_api_key")
        # Constant-time against every key: no early exit that times which one is close.
        if not any([hmac.compare_digest(given.encode(), k.encode()) for k in keys]):
            raise AuthError("invalid API key", code="invalid_api_key")
    return await handler(request)


def _presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


@web.middleware
async def _errors_and_metrics(request: web.Request, handler):
    """Every failure leaves in its API's error shape; every request is counted."""
    svc = request.app[SERVICE]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # nginx's "client closed request"
        raise
    except Exception as exc:
        err = as_w2s_error(exc)
        status = err.status
        svc.metrics.errors.labels(type=err.type, status=str(status)).inc()
        if status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, status, err.message)
        return error_response(err, api_for_path(request.path))
    finally:
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "other"
        svc.metrics.request_done(endpoint, request.get(ROUTE_KEY, "-"), status, loop.time() - t0)


# --- ops endpoints ------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. `?detail=1` adds each upstream's state (no secrets: error
    messages are the retry layer's, with configured keys masked)."""
    if request.query.get("detail") not in ("1", "true"):
        return web.json_response({"status": "ok"})
    svc = request.app[SERVICE]
    engine = svc.engine
    return web.json_response({"status": "ok", "ready": svc.ready,
                              "upstreams": engine.health() if engine is not None else {}})


async def ready(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    if svc.draining:  # SIGTERM: out of the balancer's pool (proxy/server/drain.py)
        return web.json_response({"status": "draining"}, status=503)
    if svc.ready:
        return web.json_response({"status": "ready", "routes": [i.name for i in svc.loaded().routes()]})
    if svc.load_error is not None:
        return web.json_response({"status": "failed", "error": svc.load_error}, status=503)
    return web.json_response({"status": "loading"}, status=503, headers={"Retry-After": "5"})


async def metrics_text(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# --- running ------------------------------------------------------------------


async def start(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `app` in the running loop -> (runner, bound port). `await runner.cleanup()` stops it."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Run the server until SIGTERM / SIGINT, then drain (what `w2s serve` calls)."""
    host = host or config.server.host
    port = port if port is not None else config.server.port
    app = create_app(config)
    # One line whatever the log level: where to point the clients.
    print(f"w2s: serving {len(config.routes)} route(s) on http://{host}:{port}/v1 "
          f"(models load in the background; GET /ready says when)", file=sys.stderr, flush=True)
    asyncio.run(_serve_until_signal(app, host, port, config.server.drain_seconds))


async def _serve_until_signal(app: web.Application, host: str, port: int, drain_seconds: float) -> None:
    from w2s.proxy.server.drain import drain

    runner = web.AppRunner(app, handler_cancellation=True, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print(f"w2s: stopping: draining for up to {drain_seconds:g} s (server.drain_seconds; "
              "a second signal stops at once)", file=sys.stderr, flush=True)
        stop.clear()
        draining = [asyncio.ensure_future(drain(app[SERVICE], drain_seconds)), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(draining, return_when=asyncio.FIRST_COMPLETED)
        for task in draining:
            task.cancel()
    finally:
        await runner.cleanup()  # closes the listener; a search still running is cancelled
