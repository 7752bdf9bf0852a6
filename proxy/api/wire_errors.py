"""The one place a failure becomes an error in each API's own wire shape.

OpenAI:    {"error": {"message", "type", "param", "code"}}
Anthropic: {"type": "error", "error": {"type", "message"}}

Headers: 429 and 503 carry Retry-After; every error carries x-should-retry,
which both official SDKs obey. It is "false" wherever a retry would re-run a
costly search that fails the same way (bad input, upstream refusals, bugs).

Transport-free: the HTTP server (proxy/server/http_errors.py) adds only the
translation of aiohttp's own exceptions; batch files use these bodies as they are.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Literal

import pydantic

from w2s.proxy.core.errors import AuthError, InvalidRequest, UnsupportedField, UpstreamTimeout, W2SError

log = logging.getLogger("w2s.server")

Api = Literal["openai", "anthropic"]


def api_for_path(path: str) -> Api:
    """Which API's error shape a path speaks (unknown paths get OpenAI's)."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def as_w2s_error(exc: BaseException) -> W2SError:
    """Any exception a request let through -> a W2SError the client may see."""
    if isinstance(exc, W2SError):
        return exc
    if isinstance(exc, json.JSONDecodeError):
        return InvalidRequest(f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              code="invalid_json")
    if isinstance(exc, pydantic.ValidationError):
        return validation_error(exc)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the search did not finish within server.request_timeout")
    # A bug: say little to the client, everything to the log.
    log.error("unhandled error", exc_info=exc)
    return W2SError(f"internal server error ({type(exc).__name__})")


def validation_error(exc: pydantic.ValidationError) -> InvalidRequest:
    """The first pydantic error -> 400 naming the field, e.g. `messages[0].content`."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"malformed JSON body: {first.get('msg', '')}", code="invalid_json")
    param = loc_to_param(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        msg = "field required"
    else:
        # A union reports one error per member, all at the same field: say them together.
        same = [e.get("msg", "") for e in errors[1:] if loc_to_param(e.get("loc", ())) == param]
        if same:
            rest = [m.removeprefix("Input should be ") for m in same]
            msg = " or ".join(dict.fromkeys([msg, *rest]))
    err_cls = InvalidRequest
    if first.get("type") == "extra_forbidden":
        err_cls, msg = UnsupportedField, "unknown field: this proxy does not support it"
    return err_cls(f"{param or 'body'}: {msg}" if param else msg, param=param or None)


def loc_to_param(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_union_tag(part):
            out += f".{part}" if out else str(part)
    return out


def _is_union_tag(part) -> bool:
    # pydantic puts the union member's type into loc (e.g. "str", "list[...]",
    # "function-after[...]"): not a field name the client wrote.
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "list", "dict"))


def openai_body(err: W2SError) -> dict:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def anthropic_body(err: W2SError) -> dict:
    return {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}


def body_for(err: W2SError, api: Api) -> dict:
    return anthropic_body(err) if api == "anthropic" else openai_body(err)


def error_headers(err: W2SError) -> dict[str, str]:
    headers = {"x-should-retry": "true" if err.retryable else "false"}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(err, AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="w2s-proxy"'
    return headers
