"""The session's real models: one Engine, loaded once, and the servers in front of it.

A pytest plugin (tests/conftest.py registers it). `engine` is the only fixture in the
suite that loads the shared models; every integration test (and the system tests that
need them) uses it, directly or through `live` and `auth_live`, the proxy server over it.

Everything lives in the session's event loop (pytest-asyncio's, see pyproject.toml):
async tests await the engine and talk to the servers directly. A sync test that uses
the engine drives the servers with blocking clients, so it runs in a worker thread
while this loop serves it (`pytest_pyfunc_call` below).
"""
from __future__ import annotations

import asyncio
import functools
import os

import pytest

from tests.support.configs import TEST_KEY, session_config_dict, with_server
from tests.support.servers import LiveServer
from w2s.proxy.core.config import Config
from w2s.proxy.core.config_load import parse_config


@pytest.fixture(scope="session")
def config() -> Config:
    """The session config (tests/support/configs.py: config.yaml's routes, made tiny, plus the test routes)."""
    return parse_config(session_config_dict(), "tests")


@pytest.fixture(scope="session")
async def models_loop() -> asyncio.AbstractEventLoop:
    """The session's event loop: where the engine and its servers run."""
    return asyncio.get_running_loop()


@pytest.fixture(scope="session")
async def engine(config, models_loop):
    """The one Engine over the real small models (SmolLM2 guides, a Gemma 3 270M upstream)."""
    from w2s.proxy.engine import Engine

    eng = Engine(config)
    await eng.start()
    yield eng
    await eng.aclose()


async def serve(config: Config, engine):
    """A proxy server for `config`'s server settings, over the session's engine, on loopback."""
    from w2s.proxy.server.app import create_app, start
    from w2s.proxy.server.service import SERVICE

    app = create_app(config, engine)
    runner, port = await start(app, "127.0.0.1", 0)
    return LiveServer(app, runner, port, app[SERVICE].engine)


@pytest.fixture(scope="session")
async def live(engine) -> LiveServer:
    """The session config served as is: no auth."""
    srv = await serve(engine.config, engine)
    yield srv
    await srv.runner.cleanup()


@pytest.fixture(scope="session")
async def auth_live(engine) -> LiveServer:
    """The same engine behind API keys: one from the environment, one literal."""
    os.environ["W2S_TEST_KEY"] = TEST_KEY
    data = with_server(session_config_dict(), api_keys=["os.environ/W2S_TEST_KEY", "sk-literal"])
    srv = await serve(parse_config(data, "tests (auth)"), engine)
    yield srv
    await srv.runner.cleanup()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """A sync test on the session's models runs in a worker thread while their loop serves it:
    its blocking clients would otherwise wait on a loop that never runs."""
    if "models_loop" not in pyfuncitem.fixturenames or pyfuncitem.get_closest_marker("asyncio"):
        return None  # not on the models, or an async test (pytest-asyncio runs it in that loop)
    loop: asyncio.AbstractEventLoop = pyfuncitem.funcargs["models_loop"]
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    loop.run_until_complete(loop.run_in_executor(None, functools.partial(pyfuncitem.obj, **args)))
    return True
