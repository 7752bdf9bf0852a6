"""A guide's window: the prompt cut from the left, alike for both sides, so prompt + answer fits.

The rule for a guide whose context is shorter than the upstream's (SmolLM2's 8k under
Gemma 3's 32k): the guide scores with the prompt's *start* cut away, never past its
window. The cut is made on the prompt itself (characters of the conversation; system
messages and the prefill stay), once for both sides of the pair, so both read the same
text and a score stays a log-ratio over the same condition. It is said in the answer's
notes. The upstream always reads the whole prompt.

A session budgets for the longest answer the search may write (`max_tokens` upstream
tokens, times ANSWER_RATIO for vocabularies that split text finer); an answer that
still outgrows the window cuts the prompt further (scorers/pair.py re-fits and starts
its caches over), so no row is ever longer than the guide's window.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from w2s.proxy.core.context import conversation_chars, cut_left
from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.rendering import ResponseEncoder
from w2s.proxy.core.types import Prompt

ANSWER_RATIO = 1.25  # guide tokens budgeted per upstream token of answer
MARGIN = 8  # EOS and whatever a template adds after the answer

Encoders = Callable[[Prompt], list[ResponseEncoder]]  # one per side


def reserve_for(answer_tokens: int | None) -> int:
    """Guide tokens kept free for the answer (0 when its length is unknown)."""
    return 0 if answer_tokens is None else math.ceil(answer_tokens * ANSWER_RATIO) + MARGIN


def over(encs: Sequence[ResponseEncoder], windows: Sequence[int | None], reserve: int) -> int:
    """Tokens by which the longest side's prompt + `reserve` passes its window (<= 0: it fits)."""
    return max((len(e.prompt_ids) + reserve - w for e, w in zip(encs, windows) if w is not None), default=0)


def fit(prompt: Prompt, encoders: Encoders, windows: Sequence[int | None], reserve: int,
        guide: str) -> tuple[list[ResponseEncoder], int]:
    """(each side's encoder, characters cut from the prompt's start): the least cut that fits every side."""
    encs = encoders(prompt)
    excess, cut, total = over(encs, windows, reserve), 0, conversation_chars(prompt)
    while excess > 0:
        if cut >= total:
            smallest = min(w for w in windows if w is not None)
            raise ContextLengthExceeded(
                f"guide {guide!r} cannot hold an answer of this length ({reserve} tokens budgeted) beside any "
                f"of the prompt: its context is {smallest} tokens. Lower max_tokens.", limit=smallest)
        chars_per_token = total / max(1, max(len(e.prompt_ids) for e in encs))
        cut = min(total, cut + math.ceil(excess * chars_per_token * 1.1) + 16)
        encs = encoders(cut_left(prompt, cut))
        excess = over(encs, windows, reserve)
    return encs, cut
