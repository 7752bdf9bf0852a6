"""What every upstream over HTTP shares: its SDK client, the one retry layer, limits, stats.

The OpenAI samplers (providers/openai.py) and the Anthropic sampler build on
`RemoteSampler`: one place creates the SDK client (`max_retries=0`: tenacity in
providers/retry.py is the only retry layer), runs a call through the rate and
concurrency limiter and the retries, and redacts the key from any error.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, TypeVar

from w2s.providers import tokens
from w2s.providers.limits import Limiter
from w2s.providers.retry import RetryPolicy, RetryStats, SDKErrors, call_with_retry
from w2s.proxy.core import context
from w2s.proxy.core.config_load import resolve_secret
from w2s.proxy.core.context import TokenCount
from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.types import Prompt

T = TypeVar("T")
log = logging.getLogger("w2s.providers.remote")


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
        self.learned_context: int | None = None  # from the upstream's own context-length error

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
        """One HTTP request through the limiter and the retry layer (UpstreamError when it fails for good).

        A context-length error (ContextLengthExceeded, a 400) that states the model's context teaches
        it: later prompts that cannot fit are refused before admission (Engine.check_context)."""
        try:
            return await call_with_retry(
                lambda: self.limiter.run(request), policy=self.policy, errs=self._errs, label=self._label,
                provider=self.name, stats=self.stats, secrets=(self._secret,))
        except ContextLengthExceeded as e:
            if e.limit is not None and e.limit != self.learned_context:
                log.warning("%s: its context is %d tokens (learned from its context-length error)",
                            self._label, e.limit)
                self.learned_context = e.limit
            raise

    @property
    def context_tokens(self) -> int | None:
        """The model's context: its config's `context_tokens`, else what its own error said, else unknown."""
        return self.cfg.context_tokens or self.learned_context

    async def count_prompt(self, prompt: Prompt, bound: int | None) -> TokenCount:
        """The prompt's tokens by the tiktoken estimate (the upstream's own tokenizer is unknown),
        with OpenAI's framing (4 a message, 3 to prime the reply), off the event loop."""
        enc = await self.encoding()
        framing = 4 * len(prompt.as_messages()) + 3
        n = await asyncio.to_thread(context.count, context.prompt_chars(prompt), lambda t: tokens.count(enc, t),
                                    None if bound is None else bound - framing)
        return TokenCount(n.tokens + framing, n.exact)

    async def encoding(self):
        """The tiktoken encoding that estimates counts an upstream did not report."""
        return await tokens.load_encoding(self._encoding_name)
