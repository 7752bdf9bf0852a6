"""The statistics every bench report uses; reports only format what these return."""
from __future__ import annotations

import math
from typing import Callable, Sequence


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); nan where undefined."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n == 1:
        return m, math.nan
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a - b, pair by pair (the same openings in the same order)."""
    return [x - y for x, y in zip(a, b)]


def paired_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of a - b over paired observations."""
    return mean_se(diffs(a, b))


def win_rate(a: Sequence[float], b: Sequence[float], sign: int = 1) -> float:
    """The share of pairs where a beats b, a tie counting half; sign=-1 when lower wins."""
    return sum(1.0 if sign * x > sign * y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / len(a)


def share(xs: Sequence[float], pred: Callable[[float], bool]) -> float:
    """The share of xs for which pred holds."""
    return sum(1 for x in xs if pred(x)) / len(xs) if xs else math.nan


def per_item(total: float, n: int) -> float:
    """A sum spread over n items (answers, openings, requests)."""
    return total / n if n else math.nan


def nearest_rank(xs: Sequence[float], q: float) -> float:
    """The q-quantile as the order statistic nearest to q * (n - 1)."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def quantile(xs: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (numpy's default)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
