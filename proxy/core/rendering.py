"""Render a Prompt into one model's own prompt text.

Each model (upstream or guide) renders the user's prompt itself, so nothing
has to match between them but the response text.

Three ways, in order: a chat template given in config (Jinja, proxy/core/chat_template.py),
a format string with `{system}` and `{prompt}`, or the model's own chat template;
a model with none gets a plain transcript. A format string holds one user
message: an upstream (`strict`) refuses a multi-turn chat it would cut to the
last user message, with a 400 that says how to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass

from proxy.core.chat_template import ChatTemplate
from proxy.core.errors import InvalidRequest
from proxy.core.types import Prompt, content_text as _text


@dataclass(frozen=True)
class Rendered:
    text: str
    # Chat templates carry their own BOS; plain templates let the tokenizer add
    # it (Gemma base needs its BOS, SmolLM2's tokenizer adds none).
    add_special_tokens: bool
    dropped: tuple[str, ...] = ()  # what of the prompt the template could not hold (said in the response)


def render(prompt: Prompt, tokenizer=None, template: str | None = None, system: str | None = None, *,
           chat_template: ChatTemplate | None = None, strict: str | None = None) -> Rendered:
    """`strict`: the upstream's name; a multi-turn chat its format string cannot hold is a 400."""
    messages = prompt.as_messages()
    if system is not None:
        messages = [m for m in messages if m.get("role") not in ("system", "developer")]
        messages.insert(0, {"role": "system", "content": system})
    if chat_template is not None:
        return Rendered(chat_template.render(_plain(messages)), False)
    if template is not None:
        if strict is not None:
            check_fits(prompt, template, strict)
        sys_text = system if system is not None else (prompt.system_text() or "")
        text = template.replace("{system}", sys_text).replace("{prompt}", prompt.user_text())
        dropped = ("system prompt",) if sys_text and "{system}" not in template else ()
        return Rendered(text, True, dropped)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(_plain(messages), tokenize=False, add_generation_prompt=True)
        return Rendered(text, False)
    if prompt.text is not None and system is None:
        return Rendered(prompt.text, True)
    return Rendered(plain_transcript(messages), True)


def _plain(messages: list[dict]) -> list[dict]:
    """Messages as chat templates read them: text content, `developer` as `system`."""
    return [{"role": m["role"] if m["role"] != "developer" else "system", "content": _text(m.get("content"))}
            for m in messages]


def check_fits(prompt: Prompt, template: str, upstream: str) -> None:
    """InvalidRequest (400) when the format string `template` would cut the conversation."""
    if prompt.messages is None:
        return  # a raw completion prompt is one piece of text
    turns = [m for m in prompt.messages if m.get("role") not in ("system", "developer")]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return
    raise InvalidRequest(
        f"upstream {upstream!r} renders prompts with the format string {template!r}, which holds one user "
        f"message; this conversation has {len(turns)} turns and would reach the upstream cut to the last one. "
        f"Set upstreams.{upstream}.chat_template (the model's tokenizer directory, its GGUF file or a Jinja "
        "template) to send it whole, or send one user message.", param="messages", code="conversation_too_long")


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
