"""Render a Prompt into one model's own prompt text.

Each model (upstream or guide) renders the user's prompt itself, so nothing
has to match between them but the response text.
"""
from __future__ import annotations

from dataclasses import dataclass

from proxy.core.types import Prompt, content_text as _text


@dataclass(frozen=True)
class Rendered:
    text: str
    # Chat templates carry their own BOS; plain templates let the tokenizer add
    # it (Gemma base needs its BOS, SmolLM2's tokenizer adds none).
    add_special_tokens: bool


def render(prompt: Prompt, tokenizer, template: str | None = None, system: str | None = None) -> Rendered:
    messages = prompt.as_messages()
    if system is not None:
        messages = [m for m in messages if m.get("role") not in ("system", "developer")]
        messages.insert(0, {"role": "system", "content": system})
    if template is not None:
        sys_text = system if system is not None else (prompt.system_text() or "")
        text = template.replace("{system}", sys_text).replace("{prompt}", prompt.user_text())
        return Rendered(text, True)
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": m["role"] if m["role"] != "developer" else "system", "content": _text(m.get("content"))}
                for m in messages]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return Rendered(text, False)
    if prompt.text is not None and system is None:
        return Rendered(prompt.text, True)
    return Rendered(plain_transcript(messages), True)


def plain_transcript(messages: list[dict]) -> str:
    """A chat rendered for a base model with no chat template."""
    parts = []
    for m in messages:
        role = m.get("role")
        content = _text(m.get("content"))
        if role in ("system", "developer"):
            parts.append(f"{content}\n\n")
        elif role == "assistant":
            parts.append(f"Assistant: {content}\n")
        else:
            parts.append(f"User: {content}\n")
    parts.append("Assistant:")
    return "".join(parts)

