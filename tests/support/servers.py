"""Real proxy servers on loopback, over scripted parts or the session's models.

Servers over scripted parts (tests/support/scripted.py) run in one background
thread with its own event loop (`server_thread`, `fresh_servers`), so tests can
drive them with the real SDKs both ways: sync clients straight from a test,
async clients from the test loop. The servers over the session's real models
live in tests/support/models.py.
"""
from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.support.prom import parse_metrics
from w2s.proxy.core.config import Config
from w2s.proxy.server.app import create_app, start
from w2s.proxy.server.service import SERVICE


class LoopThread:
    """An event loop in a daemon thread; `run(coro)` blocks until it is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="w2s-test-server", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = 600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Loopback:
    """The URLs of a server listening on 127.0.0.1:`port`."""

    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"


@dataclass
class LiveServer(Loopback):
    app: web.Application
    runner: web.AppRunner
    port: int
    engine: object

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        return http(f"{self.base}{path}", headers=headers)

    def post(self, path: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http(f"{self.base}{path}", data, {"Content-Type": "application/json", **(headers or {})})

    def metrics(self) -> dict[str, float]:
        status, _, body = self.get("/metrics")
        assert status == 200
        return parse_metrics(body)


def http(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 300):
    """A tiny sync HTTP client (status, headers, body) that does not raise on 4xx/5xx."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class ServerFactory:
    """Starts apps in the server thread and stops them all at teardown."""

    def __init__(self, lt: LoopThread):
        self.lt = lt
        self.servers: list[LiveServer] = []

    def __call__(self, config: Config, engine=None) -> LiveServer:
        async def up():
            app = create_app(config, engine)
            runner, port = await start(app, "127.0.0.1", 0)
            return LiveServer(app, runner, port, app[SERVICE].engine)

        srv = self.lt.run(up())
        self.servers.append(srv)
        return srv

    def stop(self, srv: LiveServer) -> None:
        self.lt.run(srv.runner.cleanup())
        self.servers.remove(srv)

    def close(self) -> None:
        for srv in list(self.servers):
            self.stop(srv)


@pytest.fixture(scope="session")
def server_thread():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def fresh_servers(server_thread):
    """Per-test servers (e.g. over scripted parts), stopped after the test."""
    f = ServerFactory(server_thread)
    yield f
    f.close()
