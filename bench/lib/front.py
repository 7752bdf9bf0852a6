"""Two preferences at once (bench/guide_mixture.py): each judge as a share of a single pair's gain, and
whether a mixture beats both single pairs. Pure: numbers in, numbers out.

share_j(x) = (x - plain_j) / (single_j - plain_j): 0 = plain sampling, 1 = the gain of the pair trained for
what judge j measures (the sentiment pair for warmth, the plain-words pair for plainness). A lower-is-better
judge (Dale-Chall) comes out the same way round: both differences flip sign.
"""
from __future__ import annotations

import math
import re
from typing import Sequence


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams of `text` (1.0: none repeats); nan under n words."""
    words = re.findall(r"\w+(?:'\w+)?", text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def share(x: float, plain: float, single: float) -> float:
    """x as a share of the single pair's gain over plain sampling (nan when that gain is 0)."""
    gain = single - plain
    return (x - plain) / gain if gain else math.nan


def shares(means: dict[str, float], plain: dict[str, float], single: dict[str, float]) -> dict[str, float]:
    """{judge: share} for every judge in `single` ({judge: the mean of the pair trained for it})."""
    return {j: share(means[j], plain[j], single[j]) for j in single}


def beats_both(point: dict[str, float], ends: Sequence[dict[str, float]]) -> bool:
    """A point (its shares by judge) beats the single pairs when its summed shares exceed each pair's."""
    total = sum(point.values())
    return all(total > sum(end.values()) for end in ends)
