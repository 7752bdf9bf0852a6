"""Config-driven provider registry: `provider:` name -> sampler class."""
from __future__ import annotations

from importlib import import_module

from proxy.core.config import UpstreamConfig
from proxy.core.errors import ConfigError

# Imported lazily so a local-only setup never imports an SDK it does not use.
PROVIDERS = {
    "local": "providers.local:LocalSampler",
    "openai": "providers.openai:OpenAISampler",
    "anthropic": "providers.anthropic:AnthropicSampler",
}


def make_sampler(name: str, cfg: UpstreamConfig, pool):
    try:
        target = PROVIDERS[cfg.provider]
    except KeyError:
        raise ConfigError(f"upstreams.{name}.provider: unknown provider {cfg.provider!r}") from None
    mod, cls = target.split(":")
    return getattr(import_module(mod), cls).from_config(name, cfg, pool)
