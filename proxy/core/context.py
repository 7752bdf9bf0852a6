"""Does a prompt fit? Counting it cheaply, and the 400 when it does not.

Every model has a context: an upstream's (its config, `context_tokens`, or learned
from its own context-length error), a guide's (scorers/pair.py cuts the prompt to
fit it). A search adds up to `max_tokens` to the prompt, so a request fits the
upstream when prompt + max_tokens <= its context; `max_prompt_tokens` in
`server.limits` or `routes.<r>.limits` bounds the prompt further.

Counting is cheap where it can be: a prompt longer than a few thousand characters
is estimated from slices of it (8, spread evenly) tokenized exactly, and only
tokenized whole when the estimate falls near a limit. The caller runs this off
the event loop (Engine.check_context). The in-process upstream also checks the
exact length before its forward pass, so an estimate can never let a prompt past
a model's window.

Pure: the tokenizer comes in as a function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.types import Prompt, content_text

SAMPLE_CHARS = 3072  # a prompt up to this long is tokenized whole; longer ones from SLICES slices this long in all
SLICES = 8  # spread evenly over the text, so a change of language or content part-way shows in the estimate
NEAR = 0.15  # an estimate within 15% of the bound is checked exactly (slices err by a few %)

EncodeLen = Callable[[str], int]  # text -> its token count


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool  # False: estimated from slices (far from every limit)

    def __str__(self) -> str:
        return f"{self.tokens}" if self.exact else f"about {self.tokens} (estimated)"


def prompt_chars(prompt: Prompt) -> str:
    """Everything of a prompt that becomes tokens, but its template's framing."""
    if prompt.text is not None:
        return prompt.text + prompt.prefill
    return "\n".join(content_text(m.get("content")) for m in prompt.messages or ()) + prompt.prefill


def _sample(text: str) -> str:
    size, step = SAMPLE_CHARS // SLICES, len(text) // SLICES
    return "".join(text[i * step: i * step + size] for i in range(SLICES - 1)) + text[-size:]


def count(text: str, encode_len: EncodeLen, bound: int | None) -> TokenCount:
    """`text`'s tokens: exact when short or near `bound`, else an estimate from slices of it."""
    if len(text) <= SAMPLE_CHARS or bound is None:
        return TokenCount(encode_len(text), True)
    sample = _sample(text)
    estimate = math.ceil(encode_len(sample) * len(text) / len(sample))
    if estimate < bound * (1 - NEAR) or estimate > bound * (1 + NEAR):
        return TokenCount(estimate, False)
    return TokenCount(encode_len(text), True)


def bound_for(max_tokens: int, window: int | None, prompt_limit: tuple[int, str] | None) -> int | None:
    """The most prompt tokens a request may have (None: unbounded)."""
    bounds = [b for b in (None if window is None else window - max_tokens,
                          None if prompt_limit is None else prompt_limit[0]) if b is not None]
    return min(bounds) if bounds else None


def check(n: TokenCount, max_tokens: int, window: int | None, who: str,
          prompt_limit: tuple[int, str] | None = None) -> None:
    """ContextLengthExceeded (400, code context_length_exceeded) naming the counts and the limit.

    `who`: the model whose context `window` is (e.g. "upstream 'gemma-local'"); `prompt_limit`:
    (max_prompt_tokens, where it is set)."""
    if prompt_limit is not None and n.tokens > prompt_limit[0]:
        limit, where = prompt_limit
        raise ContextLengthExceeded(f"the prompt has {n} tokens, over the limit {where} = {limit}",
                                    limit=limit, prompt_tokens=n.tokens)
    if window is not None and n.tokens + max_tokens > window:
        raise ContextLengthExceeded(
            f"the prompt has {n} tokens and max_tokens is {max_tokens}: {n.tokens + max_tokens} tokens, "
            f"more than {who} holds ({window}-token context). Shorten the prompt or lower max_tokens.",
            limit=window, prompt_tokens=n.tokens)


def cut_left(prompt: Prompt, chars: int) -> Prompt:
    """The prompt without the first `chars` characters of its conversation: system messages and the
    prefill are kept, and every message stays (emptied if need be), so roles still alternate."""
    if prompt.text is not None:
        return replace(prompt, text=prompt.text[chars:])
    out, left = [], chars
    for m in prompt.messages or ():
        if m.get("role") in ("system", "developer") or left <= 0:
            out.append(m)
            continue
        text = content_text(m.get("content"))
        out.append({**m, "content": text[left:]})
        left -= min(left, len(text))
    return replace(prompt, messages=tuple(out))


def conversation_chars(prompt: Prompt) -> int:
    """How many characters `cut_left` can take."""
    if prompt.text is not None:
        return len(prompt.text)
    return sum(len(content_text(m.get("content"))) for m in prompt.messages or ()
               if m.get("role") not in ("system", "developer"))
