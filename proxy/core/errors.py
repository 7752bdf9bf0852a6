"""One error hierarchy for the whole proxy.

Every failure a user can see is a `W2SError`. The HTTP layer maps it to the wire
shape of the API being spoken in one place (`proxy/api/wire_errors.py`); the CLI
prints `str(err)` as one line.
"""
from __future__ import annotations


class W2SError(Exception):
    status = 500
    type = "server_error"  # OpenAI error type
    anthropic_type = "api_error"
    retryable = False  # tells clients whether a retry can help (x-should-retry)
    code: str | None = None  # machine-readable code; subclasses may set a default

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(W2SError):
    """A bad config file, key, route or missing model file. Found at load time."""


class ModelLoadError(ConfigError):
    pass


class InvalidRequest(W2SError):
    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class UnsupportedField(InvalidRequest):
    code = "unsupported_field"


class AuthError(W2SError):
    status = 401
    type = "authentication_error"
    anthropic_type = "authentication_error"


class NotFound(W2SError):
    status = 404
    type = "not_found_error"
    anthropic_type = "not_found_error"


class RequestTooLarge(W2SError):
    status = 413
    type = "invalid_request_error"
    anthropic_type = "request_too_large"


class Overloaded(W2SError):
    """The request queue is full: come back later."""

    status = 429
    type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class NotReady(W2SError):
    """The models are still loading (or failed to load): come back later."""

    status = 503
    type = "service_unavailable"
    anthropic_type = "overloaded_error"

    def __init__(self, message: str, *, retry_after: float = 5.0, retryable: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable


class Draining(NotReady):
    """This server is shutting down (SIGTERM) and starts no new search; nothing was computed
    for the request, so a retry, which a load balancer sends to another replica, is safe."""

    code = "draining"

    def __init__(self, message: str):
        super().__init__(message, retry_after=1.0)


class UpstreamError(W2SError):
    """The upstream model API failed after its retries."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"

    def __init__(self, message: str, *, provider: str = "", upstream_status: int | None = None, **kw):
        super().__init__(message, **kw)
        self.provider = provider
        self.upstream_status = upstream_status


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_timeout"


class UpstreamRefused(UpstreamError):
    """The upstream answered 4xx: the same request will fail again."""

    status = 502
    type = "upstream_error"


class UpstreamUnavailable(W2SError):
    """The upstream is cooling down after repeated failures: fail fast, say when to come back."""

    status = 503
    type = "upstream_unavailable"
    anthropic_type = "overloaded_error"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, provider: str = ""):
        super().__init__(message)
        self.retry_after = retry_after
        self.provider = provider


class UpstreamCannotContinue(W2SError):
    """The upstream answers, but cannot continue a partial answer, and its config says fail rather than degrade."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"
    code = "upstream_cannot_continue"

    def __init__(self, message: str, *, provider: str = ""):
        super().__init__(message)
        self.provider = provider


class ContextLengthExceeded(InvalidRequest):
    """The prompt plus max_tokens does not fit a model's context (or a prompt limit): a 400,
    never retried and never counted against an upstream's health (the same request fails
    the same way). `limit`: the model's context in tokens when known (an upstream's own
    context error may state it: providers/retry.py learns it from there)."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, limit: int | None = None, prompt_tokens: int | None = None,
                 param: str | None = "messages"):
        super().__init__(message, param=param)
        self.limit = limit
        self.prompt_tokens = prompt_tokens


class NoValidAnswer(W2SError):
    """Every candidate of a search bound to an output format (`response_format`, `text.format`) failed
    it: not JSON, or not valid against the schema. Never returned as an answer; `notes` are the search's."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"
    code = "no_valid_structured_output"

    def __init__(self, message: str, *, notes: list[str] | tuple[str, ...] = ()):
        super().__init__(message + (" Search notes: " + "; ".join(notes) if notes else ""))
        self.notes = list(notes)
