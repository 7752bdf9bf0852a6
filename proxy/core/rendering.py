"""Render a Prompt into one model's own prompt text, and a response into the ids a guide scores.

Each model (upstream or guide) renders the user's prompt itself, so nothing
has to match between them but the response text.

Three ways, in order: a chat template given in config (Jinja, proxy/core/chat_template.py),
a format string with `{system}` and `{prompt}`, or the model's own chat template;
a model with none gets a plain transcript. With both a chat template and a format
string, a raw prompt (/v1/completions) takes the format string, verbatim with
`{prompt}`, and a chat the chat template. A format string holds one user
message: an upstream (`strict`) refuses a multi-turn chat it would cut to the
last user message, with a 400 that says how to fix it.

`ResponseEncoder` is the one place that turns prompt + response into a guide
side's token ids: the scorer (scorers/pair.py) and the trainer (proxy/train/)
both use it, so a guide is trained on exactly the ids it later scores.
"""
from __future__ import annotations

from dataclasses import dataclass

from w2s.proxy.core.chat_template import ChatTemplate
from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.tools import text_turns
from w2s.proxy.core.types import Prompt
from w2s.proxy.core.types import content_text as _text


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
    if chat_template is not None and not (prompt.text is not None and template is not None):
        return Rendered(chat_template.render(_plain(messages, chat_template.source)), not chat_template.own_bos)
    if template is not None:
        if strict is not None:
            check_fits(prompt, template, strict)
        sys_text = system if system is not None else (prompt.system_text() or "")
        text = template.replace("{system}", sys_text).replace("{prompt}", prompt.user_text())
        dropped = ("system prompt",) if sys_text and "{system}" not in template else ()
        return Rendered(text, True, dropped)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(_plain(messages, str(tokenizer.chat_template)), tokenize=False,
                                             add_generation_prompt=True)
        return Rendered(text, False)
    if prompt.text is not None and system is None:
        return Rendered(prompt.text, True)
    return Rendered(plain_transcript(text_turns(messages, tool_role=False)), True)


def _plain(messages: list[dict], source: str = "") -> list[dict]:
    """Messages as chat templates read them: text content, `developer` as `system`; tool calls and results
    as text (proxy/core/tools.py), results in a `tool` turn where the template has that role."""
    tool_role = "'tool'" in source or '"tool"' in source
    return [{"role": m["role"] if m["role"] != "developer" else "system", "content": _text(m.get("content"))}
            for m in text_turns(messages, tool_role)]


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


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ResponseEncoder:
    """One guide side's token ids for a prompt and any response to it.

    The side renders the prompt (its own template and system prompt), tokenizes
    prompt + response *text* in one go (a merge at the boundary is what the model
    really reads), and appends its EOS when the response is finished, so
    "stopping here" is part of what is scored. The response starts where those
    ids leave the prompt's own ids (their common prefix), so a boundary merge
    moves the mask instead of scoring prompt text.
    """

    def __init__(self, prompt: Prompt, tokenizer, eos_id: int, template: str | None = None,
                 system: str | None = None):
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.rendered = render(prompt, tokenizer, template, system)
        # A prefill (a trailing assistant message) is shared by every response:
        # it sits on the prompt side of the mask.
        self.prefill = prompt.prefill
        self.prompt_ids: list[int] = self._encode("")

    def _encode(self, response: str) -> list[int]:
        r = self.rendered
        return self.tokenizer(r.text + self.prefill + response, add_special_tokens=r.add_special_tokens)["input_ids"]

    def ids(self, response: str, finished: bool) -> tuple[list[int], int]:
        """(ids, start): prompt + response [+ EOS], and the index of the first scored token (>= 1)."""
        ids = self._encode(response)
        if finished:
            ids = ids + [self.eos_id]
        return ids, max(1, common_prefix_len(self.prompt_ids, ids))
