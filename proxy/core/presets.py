"""`preset:` on an OpenAI upstream: what the hosted APIs' docs say, as defaults.

Each preset fills in `mode`, `base_url` and the `continuation` style the API's
docs describe for continuing a partial assistant message, plus what the docs
say about `n`. A preset is only a default: every key the user writes wins, and
the continuation probe still decides (a style set explicitly is still verified
once). Taken from the providers' docs; not verified live here (docs/upstreams.md).
"""
from __future__ import annotations

from typing import Any

from w2s.proxy.core.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeek "Chat Prefix Completion (Beta)": the last message is the assistant's with
    # "prefix": true, on the beta base URL.
    "deepseek": {"mode": "chat-continue", "base_url": "https://api.deepseek.com/beta", "continuation": "prefix"},
    # Mistral La Plateforme: "prefix": true on the last assistant message.
    "mistral": {"mode": "chat-continue", "base_url": "https://api.mistral.ai/v1", "continuation": "prefix"},
    # Moonshot Kimi "Partial Mode": "partial": true on the last assistant message; the reply omits it.
    "moonshot": {"mode": "chat-continue", "base_url": "https://api.moonshot.ai/v1", "continuation": "partial"},
    # Alibaba DashScope compatible mode (Qwen, non-thinking models): "partial": true.
    "dashscope": {"mode": "chat-continue", "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                  "continuation": "partial"},
    # Groq: a plain trailing assistant message is continued; its docs allow only n = 1.
    "groq": {"mode": "chat-continue", "base_url": "https://api.groq.com/openai/v1", "continuation": "plain",
             "max_n": 1},
    # OpenRouter: a plain trailing assistant message (assistant prefill), passed to the model's host.
    "openrouter": {"mode": "chat-continue", "base_url": "https://openrouter.ai/api/v1", "continuation": "plain"},
}


def apply_preset(section: Any, where: str) -> Any:
    """An upstream section with its preset's defaults under the user's own keys (which win)."""
    if not isinstance(section, dict) or "preset" not in section:
        return section
    name = section["preset"]
    if name not in PRESETS:
        raise ConfigError(f"{where}.preset: unknown preset {name!r} (one of {', '.join(PRESETS)})")
    if section.get("provider", "openai") != "openai":
        raise ConfigError(f"{where}.preset: presets are for provider openai (OpenAI-compatible APIs)")
    return {"provider": "openai", **PRESETS[name], **section}
