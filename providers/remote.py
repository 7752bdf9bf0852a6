"""What every upstream over HTTP shares: its SDK client, the one retry layer, limits, stats.

The OpenAI samplers (providers/openai.py) and the Anthropic sampler build on
`RemoteSampler`: one place creates the SDK client (`max_retries=0`: tenacity in
providers/retry.py is the only retry layer), runs a call through the rate and
concurrency limiter and the retries, and redacts the key from any error.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from w2s.providers import tokens
from w2s.providers.limits import Limiter
from w2s.providers.retry import RetryPolicy, RetryStats, SDKErrors, call_with_retry
from w2s.proxy.core.config import resolve_secret
from w2s.proxy.core.modes import DrawMode

T = TypeVar("T")


class RemoteSampler:
    """The transport half of a remote sampler; subclasses say how one draw is asked for."""

    model_names: tuple[str, ...] = ()  # nothing to load locally
    draw_mode: DrawMode

    def __init__(self, name: str, cfg: Any, sdk: Any, *, client: Any = None,
                 retry_policy: RetryPolicy | None = None, encoding_model: str | None = None):
        self.name = name
        self.cfg = cfg
        self._secret = resolve_secret(cfg.api_key)
        self.client = client or self._client_class(sdk)(
            base_url=cfg.base_url, api_key=self._secret or "none", max_retries=0, timeout=cfg.timeout)
        self.policy = retry_policy or RetryPolicy(max_retries=cfg.max_retries)
        self.limiter = Limiter(cfg.concurrency, cfg.requests_per_minute, cfg.timeout)
        self.stats = RetryStats()
        self._errs = SDKErrors.of(sdk)
        self._encoding_name = tokens.encoding_name(encoding_model, cfg.tokenizer)
        self._label = f"upstream {name!r} ({self.describe()})"

    @staticmethod
    def _client_class(sdk: Any) -> Callable[..., Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return str(self.draw_mode)

    @classmethod
    def from_config(cls, name: str, cfg: Any, pool=None, **kw) -> "RemoteSampler":
        return cls(name, cfg, **kw)

    async def start(self) -> None:
        pass  # remote: nothing to load; failures surface on the first request

    async def probe(self) -> None:
        """A cheap call that proves the upstream answers (GET /v1/models); raises if it does not."""
        await self.client.models.list()

    async def aclose(self) -> None:
        await self.client.close()

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One HTTP request through the limiter and the retry layer (UpstreamError when it fails for good)."""
        return await call_with_retry(
            lambda: self.limiter.run(request), policy=self.policy, errs=self._errs, label=self._label,
            provider=self.name, stats=self.stats, secrets=(self._secret,))

    async def encoding(self):
        """The tiktoken encoding that estimates counts an upstream did not report."""
        return await tokens.load_encoding(self._encoding_name)
