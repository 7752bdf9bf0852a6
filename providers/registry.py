"""Config-driven provider registry: `provider:` name -> sampler class."""
from __future__ import annotations

from importlib import import_module

from w2s.proxy.core.config import UpstreamConfig
from w2s.proxy.core.errors import ConfigError

# Imported lazily so a local-only setup never imports an SDK it does not use.
PROVIDERS = {
    "local": "w2s.providers.local:LocalSampler",
    "openai": "w2s.providers.openai:OpenAISampler",
    "anthropic": "w2s.providers.anthropic:AnthropicSampler",
}


def make_sampler(name: str, cfg: UpstreamConfig, pool):
    try:
        target = PROVIDERS[cfg.provider]
    except KeyError:
        raise ConfigError(f"upstreams.{name}.provider: unknown provider {cfg.provider!r}") from None
    mod, cls = target.split(":")
    return getattr(import_module(mod), cls).from_config(name, cfg, pool)
