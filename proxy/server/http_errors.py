"""HTTP errors: aiohttp's own exceptions joined to the one hierarchy, and the
error response in each API's shape (the shapes live in proxy/api/wire_errors.py)."""
from __future__ import annotations

from aiohttp import web

from w2s.proxy.api import wire_errors
from w2s.proxy.api.wire_errors import Api, body_for, error_headers
from w2s.proxy.core.errors import InvalidRequest, NotFound, RequestTooLarge, W2SError


class MethodNotAllowed(W2SError):
    status = 405
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


def as_w2s_error(exc: BaseException) -> W2SError:
    """Any exception a handler let through -> a W2SError the client may see."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return RequestTooLarge(f"request body exceeds the server's limit ({_limit_of(exc)})",
                               code="request_too_large")
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such endpoint", code="unknown_url")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {exc.method} not allowed here (allowed: {', '.join(sorted(exc.allowed_methods))})")
    if isinstance(exc, web.HTTPException) and exc.status < 500:
        err = InvalidRequest(exc.reason or "bad request")
        err.status = exc.status
        return err
    return wire_errors.as_w2s_error(exc)


def _limit_of(exc: web.HTTPRequestEntityTooLarge) -> str:
    text = exc.text or ""
    # aiohttp: "Maximum request body size N exceeded, actual body size M"
    for word in text.split():
        if word.isdigit():
            return f"{word} bytes"
    return "server.max_body_bytes"


def error_response(err: W2SError, api: Api) -> web.Response:
    return web.json_response(body_for(err, api), status=err.status, headers=error_headers(err))
