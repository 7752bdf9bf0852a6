"""Fixtures for a real proxy server on loopback.

The servers run in one background thread with its own event loop, so tests
can drive them with the real SDKs both ways: sync clients straight from a
test, async clients from the test loop. The embedded config.yaml's models are
loaded once per session (searches kept tiny: 2 cores).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from w2s.proxy.core.config import Config, load_config
from w2s.proxy.server.app import create_app, start
from w2s.proxy.server.service import SERVICE
from tests.prom import parse_metrics

REPO = Path(__file__).resolve().parents[1]
TEST_KEY = "sk-w2s-test-key"
GUIDED = "w2s-default"  # config.yaml's guided (CBS) route
PASSTHROUGH = "gemma-passthrough"  # config.yaml's pass-through route
# Every guided search in these tests: 2 rounds of 4 upstream tokens, 2 beams x 2.
TINY = {"w": 2, "k": 2, "l": 4, "max_tokens": 8}


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


def tiny_config(**server) -> Config:
    """config.yaml as shipped, with each route's search made tiny for this machine."""
    cfg = load_config(REPO / "config.yaml")
    for rc in cfg.routes.values():
        small = {"max_tokens": TINY["max_tokens"]}
        if rc.search.l is not None:
            small["l"] = TINY["l"]
        rc.search = dataclasses.replace(rc.search, **small)
    cfg.server = dataclasses.replace(cfg.server, **server)
    return cfg


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


@pytest.fixture(scope="session")
def real_engine(server_thread):
    """The embedded config's models, loaded once, living in the server loop."""
    from w2s.proxy.engine import Engine

    engine = Engine(tiny_config())
    server_thread.run(engine.start())
    yield engine
    server_thread.run(engine.aclose())


@pytest.fixture(scope="session")
def servers(server_thread):
    f = ServerFactory(server_thread)
    yield f
    f.close()


@pytest.fixture(scope="session")
def live(servers, real_engine) -> LiveServer:
    """The embedded config, no auth."""
    return servers(real_engine.config, real_engine)


@pytest.fixture(scope="session")
def auth_live(servers, real_engine) -> LiveServer:
    """The same engine behind API keys: one from the environment, one literal."""
    os.environ["W2S_TEST_KEY"] = TEST_KEY
    cfg = dataclasses.replace(real_engine.config)
    cfg.server = dataclasses.replace(cfg.server, api_keys=["os.environ/W2S_TEST_KEY", "sk-literal"])
    return servers(cfg, real_engine)


@pytest.fixture
def fresh_servers(server_thread):
    """Per-test servers (e.g. over scripted parts), stopped after the test."""
    f = ServerFactory(server_thread)
    yield f
    f.close()


__all__ = ["server_thread", "real_engine", "servers", "live", "auth_live", "fresh_servers"]
