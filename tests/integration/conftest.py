"""Integration tier: the real small models and real local servers.

The models are the session's one `engine` (tests/support/models.py, shared with every
tier that needs them); `live` and `auth_live` serve it. Here: the recording upstream
that tests/integration/test_providers_live.py drives the remote providers against.
"""
import json
import os
import time

import pytest
from aiohttp import web

from tests.support.configs import session_config_dict, with_server
from tests.support.live_upstream import KEY, KEY_ENV, Exchange, Upstream
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.server.app import create_app, start


@pytest.fixture(scope="session")
async def upstream(engine):
    """The session's pass-through routes over HTTP, behind an API key from the environment,
    recording every exchange."""
    os.environ[KEY_ENV] = KEY
    data = with_server(session_config_dict(), api_keys=[f"os.environ/{KEY_ENV}"], max_concurrent_searches=8)
    app = create_app(parse_config(data, "tests (recording upstream)"), engine)
    up = Upstream(0)

    @web.middleware
    async def record(request: web.Request, handler):
        body = json.loads(await request.read() or b"{}") if request.method == "POST" else None
        t0 = time.monotonic()
        resp = await handler(request)
        if body is not None:
            got = json.loads(resp.body) if isinstance(resp, web.Response) and resp.body else None
            up.log.append(Exchange(request.path, body, resp.status, got, t0, time.monotonic()))
        return resp

    app.middlewares.append(record)  # innermost: sees what the handlers see, after auth
    runner, up.port = await start(app, "127.0.0.1", 0)
    yield up
    await runner.cleanup()
