"""Markdown tables, the one format every bench report writes."""
from __future__ import annotations

import math


def cell(v) -> str:
    """A float to a few significant digits (nan as a dash); anything else as str()."""
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if v != 0 and abs(v) < 0.01:
            return f"{v:.2g}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(cell(v) for v in r) + " |")
    return "\n".join(out)


def pm(mean_se: tuple[float, float], digits: int = 3, signed: bool = True) -> str:
    """(mean, s.e.) as "+0.123 ± 0.045"."""
    m, se = mean_se
    return f"{m:{'+' if signed else ''}.{digits}f} ± {se:.{digits}f}"


def percent(x: float) -> str:
    return f"{100 * x:.0f}%"
