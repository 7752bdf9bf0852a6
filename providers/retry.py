"""The one retry layer for every remote upstream (the SDKs' own are off).

Retried: 408, 409, 429, 5xx (Anthropic's 529 included), connection errors,
timeouts (the SDK's and our per-attempt deadline) and malformed response
bodies. Never retried: any other 4xx, 400 above all: the same request fails
the same way. The server's `x-should-retry` header wins when present, as in
the SDKs.

Waits are exponential with jitter (many beams retry at once: jitter spreads
them), and never shorter than the server's `retry-after-ms` / `Retry-After`
(seconds or an HTTP date), capped.

After the last attempt the SDK error becomes a `proxy.core.errors.UpstreamError`
naming the upstream and the HTTP status. Error text comes from the response
body only, never from request headers, and any configured secret in it is
masked.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, TypeVar

import httpx2
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from w2s.proxy.core.errors import ContextLengthExceeded, UpstreamError, UpstreamRefused, UpstreamTimeout, W2SError
from w2s.proxy.core.types import Chunk

log = logging.getLogger("w2s.providers.retry")

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
TIMEOUT_STATUS = frozenset({408, 504})
_MAX_MESSAGE = 300


class MalformedResponse(Exception):
    """The upstream answered 200 with a body we cannot read (truncated, wrong shape)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4  # attempts after the first
    backoff_base: float = 0.5  # first wait, seconds, before jitter
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0  # a server asking for longer still gets retried after this


@dataclass
class RetryStats:
    """Counters for tests and metrics (per sampler)."""

    attempts: int = 0  # HTTP attempts started
    retries: int = 0  # attempts that were retries
    failures: int = 0  # calls that failed for good
    waits: list[float] = field(default_factory=list)  # each backoff chosen, seconds


@dataclass(frozen=True)
class SDKErrors:
    """The exception classes of one SDK (openai or anthropic): retry.py imports neither."""

    status: type[Exception]  # APIStatusError: .status_code, .response, .body
    connection: type[Exception]  # APIConnectionError
    timeout: type[Exception]  # APITimeoutError (a connection error subclass)

    @classmethod
    def of(cls, sdk) -> "SDKErrors":
        return cls(sdk.APIStatusError, sdk.APIConnectionError, sdk.APITimeoutError)


# -- classification --------------------------------------------------------

def _is_timeout(e: BaseException, errs: SDKErrors) -> bool:
    return isinstance(e, (TimeoutError, errs.timeout, httpx2.TimeoutException))


def is_retryable(e: BaseException, errs: SDKErrors) -> bool:
    if isinstance(e, errs.status):
        if context_error(e) is not None:
            return False  # the same prompt never fits
        should = _header(e, "x-should-retry")
        if should in ("true", "false"):
            return should == "true"
        status = int(getattr(e, "status_code", 0))
        return status in RETRYABLE_STATUS or status >= 500
    return isinstance(e, (TimeoutError, errs.connection, httpx2.TransportError,
                          MalformedResponse, json.JSONDecodeError))


def is_upstream_failure(e: BaseException, errs: SDKErrors) -> bool:
    """An error the upstream or the network caused (as opposed to a bug here)."""
    return isinstance(e, (TimeoutError, errs.status, errs.connection, httpx2.TransportError,
                          MalformedResponse, json.JSONDecodeError))


def _header(e: BaseException, name: str) -> str | None:
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return value.strip().lower() if isinstance(value, str) else None


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """`retry-after-ms`, else `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _backoff(policy: RetryPolicy, retry_number: int) -> float:
    base = min(policy.backoff_cap, policy.backoff_base * (2 ** (retry_number - 1)))
    return base * random.uniform(0.5, 1.0)


def wait_seconds(policy: RetryPolicy, retry_number: int, error: BaseException | None) -> float:
    wait = _backoff(policy, retry_number)
    headers = getattr(getattr(error, "response", None), "headers", None)
    server = retry_after_seconds(headers)
    if server is not None:
        wait = max(wait, min(server, policy.retry_after_cap))
    return wait


# -- errors the user sees ------------------------------------------------

def redact(text: str, secrets: Iterable[str | None]) -> str:
    for s in secrets:
        if s and len(s) >= 4:  # a tiny "secret" would mask ordinary words
            text = text.replace(s, "***")
    return text


def upstream_message(e: BaseException) -> str:
    """The upstream's own error message from the response body, else a generic one."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    # SDK messages are "Error code: N - <body>"; they never carry request headers.
    return str(getattr(e, "message", "") or type(e).__name__)


# An upstream's own "prompt too long": OpenAI's code, vLLM's and Anthropic's words, and the limit they state.
_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
_CONTEXT_WORDS = re.compile(r"maximum context length|context length exceeded|context window|prompt is too long"
                            r"|too many (input )?tokens|exceeds the model's context", re.IGNORECASE)
_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)|> (\d+) maximum|context window of (\d+)"
                            r"|context length of (\d+)|limit of (\d+) tokens", re.IGNORECASE)


def context_error(e: BaseException) -> tuple[str, int | None] | None:
    """(the upstream's message, the context it states or None) when `e` is a 400 saying the prompt is
    too long for the model; None for any other error."""
    if int(getattr(e, "status_code", 0)) not in (400, 413):
        return None
    body = getattr(e, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    msg = upstream_message(e)
    if code not in _CONTEXT_CODES and not _CONTEXT_WORDS.search(msg):
        return None
    found = _CONTEXT_LIMIT.search(msg)
    limit = next((int(g) for g in found.groups() if g), None) if found else None
    return msg, limit


def translate(e: BaseException, *, label: str, provider: str, attempts: int, errs: SDKErrors,
              secrets: Iterable[str | None] = ()) -> W2SError:
    """The SDK failure as the proxy's error: no headers, no secrets, no SDK objects.

    An upstream's context-length error is the client's 400 (ContextLengthExceeded), not a 502."""
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(e, errs.status):
        status = int(getattr(e, "status_code", 0))
        msg = redact(upstream_message(e), secrets)[:_MAX_MESSAGE]
        if (ctx := context_error(e)) is not None:
            return ContextLengthExceeded(f"{label}: the prompt does not fit the model's context (upstream says: "
                                         f"{msg})", limit=ctx[1])
        if not is_retryable(e, errs) and 400 <= status < 500:
            return UpstreamRefused(f"{label}: upstream refused the request (HTTP {status}): {msg}",
                                   provider=provider, upstream_status=status)
        cls = UpstreamTimeout if status in TIMEOUT_STATUS else UpstreamError
        return cls(f"{label}: upstream failed with HTTP {status} {tries}: {msg}",
                   provider=provider, upstream_status=status)
    if _is_timeout(e, errs):
        return UpstreamTimeout(f"{label}: upstream timed out {tries}", provider=provider)
    if isinstance(e, (errs.connection, httpx2.TransportError)):
        return UpstreamError(f"{label}: cannot reach upstream {tries} (connection error)", provider=provider)
    if isinstance(e, (MalformedResponse, json.JSONDecodeError)):
        return UpstreamError(f"{label}: upstream sent a malformed response {tries}", provider=provider)
    return UpstreamError(f"{label}: upstream call failed {tries} ({type(e).__name__})", provider=provider)


# -- the loop --------------------------------------------------------------

async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    errs: SDKErrors,
    label: str,
    provider: str,
    stats: RetryStats | None = None,
    secrets: Iterable[str | None] = (),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `attempt` (one HTTP request) until it succeeds, fails for good, or retries run out.

    Raises UpstreamError / UpstreamTimeout / UpstreamRefused, or ContextLengthExceeded (a 400, never
    retried); CancelledError passes through.
    """
    stats = stats if stats is not None else RetryStats()
    secrets = tuple(secrets)

    def _wait(state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome is not None else None
        return wait_seconds(policy, state.attempt_number, err)

    def _before_sleep(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        stats.retries += 1
        stats.waits.append(wait)
        status = getattr(err, "status_code", None)
        what = f"HTTP {status}" if status is not None else type(err).__name__
        log.warning("%s: %s; retry %d/%d in %.2fs", label, what, state.attempt_number, policy.max_retries, wait)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=_wait,
        retry=retry_if_exception(lambda e: is_retryable(e, errs)),
        before_sleep=_before_sleep,
        sleep=sleep,
        reraise=True,
    )
    attempts = 0
    failure: W2SError | None = None
    try:
        async for state in retrying:
            with state:
                attempts += 1
                stats.attempts += 1
                return await attempt()
    except Exception as e:
        if not is_upstream_failure(e, errs):
            raise  # our own bug: let it show as one
        stats.failures += 1
        failure = translate(e, label=label, provider=provider, attempts=attempts, errs=errs, secrets=secrets)
    # Raised outside the handler so it carries no __context__: the SDK error
    # holds the request, auth header included.
    assert failure is not None
    raise failure


# -- partial degradation ---------------------------------------------------

Draw = tuple[list[int], Callable[[], Awaitable[list[Chunk]]]]  # continuation indices, their call


async def draw_all(draws: list[Draw], size: int) -> list[Chunk]:
    """Run every call concurrently; one chunk per continuation index, in order.

    A failed call turns into chunks with `error` set for its continuations, so
    the round goes on with the others. When every continuation failed, the
    first one's UpstreamError is raised. Cancelling the caller cancels every
    call (TaskGroup), and so every SDK request in flight.
    """
    chunks: list[Chunk | None] = [None] * size
    errors: dict[int, UpstreamError] = {}
    too_long: list[ContextLengthExceeded] = []  # the prompt does not fit: the request fails as a 400

    async def one(indices: list[int], call: Callable[[], Awaitable[list[Chunk]]]) -> None:
        try:
            got = await call()
        except ContextLengthExceeded as e:
            too_long.append(e)
            return
        except UpstreamError as e:
            for i in indices:
                chunks[i] = Chunk(error=e.message)
                errors[i] = e
            return
        for i, c in zip(indices, got, strict=True):
            chunks[i] = c

    async with asyncio.TaskGroup() as tg:
        for indices, call in draws:
            tg.create_task(one(indices, call))
    if too_long:
        raise too_long[0]
    assert all(c is not None for c in chunks), "a continuation was left without a call"
    if size and all(c.error is not None for c in chunks):
        if errors:
            raise errors[min(errors)]
        raise UpstreamError(chunks[0].error or "every upstream draw failed")
    return chunks  # type: ignore[return-value]
