"""Running batch items against a running proxy (`--url`): one POST per item.

The proxy's status and JSON body are recorded as they came back. Retries are
only where nothing was computed: the proxy could not be reached, or it said
429/503 with x-should-retry (queue full, models loading). Anything else, even
a dropped connection mid-search, becomes the item's error line, because a
blind retry could pay for the same costly search twice; `--retry-failed` is
the deliberate way to run it again.
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp

from w2s.proxy.api.results import new_id
from w2s.proxy.batch.input import BatchItem
from w2s.proxy.batch.output import Outcome
from w2s.proxy.core.errors import W2SError

RETRIES = 5  # for connection refused / 429 / 503 only
MAX_WAIT = 30.0  # seconds between two tries, whatever Retry-After says
READY_TIMEOUT = 900.0  # a proxy still loading its models at start


def base_url(url: str) -> str:
    """http://host:8000, http://host:8000/ and http://host:8000/v1 all mean the same."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class RemoteRunner:
    def __init__(self, url: str, api_key: str | None = None):
        self.base = base_url(url)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No total timeout: a search may legitimately take minutes (the proxy's
        # own server.request_timeout bounds it).
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self.headers)
        await self._wait_ready()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _wait_ready(self) -> None:
        """Wait out a proxy that is still loading; fail fast on one that is not there."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        said = False
        while True:
            try:
                async with self._session.get(f"{self.base}/ready") as r:
                    if r.status != 503:
                        return  # ready, or a server without /ready: let the requests tell
                    body = await r.json(content_type=None)
                    if isinstance(body, dict) and body.get("status") == "failed":
                        raise W2SError(f"the proxy at {self.base} failed to load its models: {body.get('error')}")
            except aiohttp.ClientConnectorError as e:
                raise W2SError(f"cannot reach the proxy at {self.base}: {e.os_error or e}") from None
            if loop.time() > deadline:
                raise W2SError(f"the proxy at {self.base} was not ready after {READY_TIMEOUT:g} s")
            if not said:
                print(f"w2s batch: waiting for the proxy at {self.base} to load its models...", file=sys.stderr)
                said = True
            await asyncio.sleep(2.0)

    async def execute(self, item: BatchItem) -> Outcome:
        request_id = new_id("req_")
        delay = 1.0
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                async with self._session.post(f"{self.base}{item.url}", json=item.body) as r:
                    raw = await r.read()
                    status, headers = r.status, r.headers
            except asyncio.CancelledError:
                raise
            except aiohttp.ClientConnectorError as e:  # never reached the proxy: safe to retry
                if last:
                    return Outcome(request_id, None, None, "connection_error", f"cannot reach {self.base}: {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT)
                continue
            except (aiohttp.ClientError, TimeoutError) as e:  # the search may have run: no blind retry
                return Outcome(request_id, None, None, "connection_error",
                               f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            if status in (429, 503) and headers.get("x-should-retry", "true") != "false" and not last:
                await asyncio.sleep(min(_retry_after(headers, delay), MAX_WAIT))
                delay = min(delay * 2, MAX_WAIT)
                continue
            return _outcome(request_id, status, headers, raw)
        raise AssertionError("unreachable")


def _outcome(request_id: str, status: int, headers, raw: bytes) -> Outcome:
    rid = headers.get("x-request-id") or request_id
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = raw[:200].decode("utf-8", "replace")
        return Outcome(rid, status, None, "invalid_response", f"HTTP {status}, not a JSON object: {snippet!r}")
    return Outcome(rid, status, body,
                   upstream_tokens=_int(headers.get("x-w2s-upstream-tokens")),
                   scorer_tokens=_int(headers.get("x-w2s-scorer-tokens")),
                   upstream_calls=_int(headers.get("x-w2s-upstream-calls")),
                   prompt_tokens=_int(headers.get("x-w2s-upstream-prompt-tokens")),
                   cached_tokens=_int(headers.get("x-w2s-upstream-cached-tokens")),
                   completion_tokens=_int(headers.get("x-w2s-upstream-completion-tokens")),
                   cost_usd=_float(headers.get("x-w2s-cost-usd")), answer_tokens=_answer_tokens(body))


def _float(v) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def _answer_tokens(body: dict) -> int:
    """The answers' own tokens: the response's usage.completion_tokens (what the client is told it got)."""
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    v = usage.get("completion_tokens")
    return v if isinstance(v, int) else 0


def _retry_after(headers, default: float) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", default)))
    except ValueError:
        return default


def _int(v: str | None) -> int:
    try:
        return int(v) if v is not None else 0
    except ValueError:
        return 0
