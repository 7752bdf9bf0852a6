"""Config-driven registry: each way of drawing (`DrawMode`) -> its sampler class."""
from __future__ import annotations

from importlib import import_module

from w2s.proxy.core.config import AnyUpstream
from w2s.proxy.core.modes import DrawMode

# Imported lazily so a local-only setup never imports an SDK it does not use.
SAMPLERS: dict[DrawMode, str] = {
    DrawMode.LOCAL: "w2s.providers.local:LocalSampler",
    DrawMode.COMPLETIONS: "w2s.providers.openai:CompletionsSampler",
    DrawMode.CHAT_CONTINUE: "w2s.providers.openai:ChatContinueSampler",
    DrawMode.CHAT_ONLY: "w2s.providers.openai:ChatOnlySampler",
    DrawMode.RESPONSES: "w2s.providers.openai_responses:ResponsesSampler",
    DrawMode.ANTHROPIC_PREFILL: "w2s.providers.anthropic:AnthropicSampler",
}


def sampler_class(mode: DrawMode) -> type:
    mod, cls = SAMPLERS[mode].split(":")
    return getattr(import_module(mod), cls)


def make_sampler(name: str, cfg: AnyUpstream, pool, **kw):
    """The sampler for one validated upstream section (`kw`: a client or retry policy, in tests)."""
    return sampler_class(cfg.draw_mode).from_config(name, cfg, pool, **kw)
