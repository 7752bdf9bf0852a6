"""Preference pairs -> the token ids the guide will score, and the held-out split.

Both answers of a pair go through the scorer's own ResponseEncoder
(proxy/core/rendering.py): the guide side's template and system prompt, prompt +
answer tokenized as one text, the side's EOS appended (a preference answer is
finished), and the scored part starting at the common prefix with the prompt's
ids. So DPO trains on exactly the ids and the mask the scorer later sums over,
boundary merges included (each answer keeps its own start, where TRL's own
tokenizer would cut both at the shorter one).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from w2s.proxy.core.config import GuideSide
from w2s.proxy.core.rendering import ResponseEncoder
from w2s.proxy.train.prefs import BadLine, Preference


@dataclass(frozen=True)
class EncodedPair:
    line: int
    chosen_ids: list[int]
    chosen_start: int  # first scored token (ResponseEncoder.ids)
    rejected_ids: list[int]
    rejected_start: int

    @property
    def tokens(self) -> int:
        return max(len(self.chosen_ids), len(self.rejected_ids))

    def as_row(self) -> dict:
        return {"line": self.line, "chosen_ids": self.chosen_ids, "chosen_start": self.chosen_start,
                "rejected_ids": self.rejected_ids, "rejected_start": self.rejected_start}


def encode_pair(pref: Preference, tokenizer, eos_id: int, side: GuideSide) -> EncodedPair:
    enc = ResponseEncoder(pref.prompt, tokenizer, eos_id, side.template, side.system)
    c, cs = enc.ids(pref.chosen, finished=True)
    r, rs = enc.ids(pref.rejected, finished=True)
    return EncodedPair(pref.line, c, cs, r, rs)


def encode_all(prefs: list[Preference], tokenizer, eos_id: int, side: GuideSide,
               max_tokens: int | None) -> tuple[list[EncodedPair], list[BadLine]]:
    """Encoded pairs, and the lines dropped (too long, or the same ids on both sides)."""
    out, dropped = [], []
    for p in prefs:
        e = encode_pair(p, tokenizer, eos_id, side)
        if e.chosen_ids == e.rejected_ids:
            dropped.append(BadLine(p.line, "chosen and rejected tokenize to the same ids"))
        elif max_tokens is not None and e.tokens > max_tokens:
            dropped.append(BadLine(p.line, f"{e.tokens} tokens, over --max-length {max_tokens}"))
        else:
            out.append(e)
    return out, dropped


def held_out_split(prefs: list[Preference], fraction: float, seed: int) -> tuple[list[int], list[int], bool]:
    """(train indices, held-out indices, by_prompt): about `fraction` of the pairs held out.

    Pairs on the same prompt stay on one side, so held-out accuracy is measured on
    prompts training never saw; with a single prompt that is impossible, and the
    split is by pair (by_prompt False). Depends only on the file and the seed, so
    a resumed run holds out the same pairs.
    """
    if len(prefs) < 2:
        raise ValueError(f"need at least 2 preference pairs for a training and a held-out split, got {len(prefs)}")
    want = min(len(prefs) - 1, max(1, round(fraction * len(prefs))))
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prefs):
        groups.setdefault(p.prompt_key, []).append(i)
    by_prompt = len(groups) >= 2
    units = list(groups.values()) if by_prompt else [[i] for i in range(len(prefs))]
    random.Random(seed).shuffle(units)
    held: list[int] = []
    for u in units:
        if len(held) + len(u) <= want:
            held += u
    if not held:  # every prompt has more pairs than `want`: hold out the smallest one
        held = min(units, key=len)
    keep = set(held)
    return [i for i in range(len(prefs)) if i not in keep], sorted(held), by_prompt
