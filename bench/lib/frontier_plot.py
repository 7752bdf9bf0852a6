"""A cost/quality frontier as a PNG: one panel per judge, quality against upstream completion tokens (log scale),
one colour per kind of search and a marker per setting, a dotted line at a token budget.

Method names are the benches' (bench/cost_frontier.py): a base ("plain", "bon8", "cbs4x4x5") and its search
options after "+" ("cbs4x4x5+k_tau=1+k_min=0"); the kind is read from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FAMILIES = {  # colour per kind of search
    "plain": "#7f7f7f", "bon": "#1f77b4", "cbs": "#2ca02c", "k_tau": "#ff7f0e", "decide_after": "#9467bd",
    "reject_at": "#d62728", "decide_after+reject_at": "#8c564b"}
MARKERS = "osD^vP*Xh"  # one per setting within a kind, in order of appearance


@dataclass
class Point:
    method: str
    label: str
    tokens: float  # upstream completion tokens per answer
    quality: dict[str, tuple[float, float]]  # judge -> (mean, s.e.)


def family(method: str) -> str:
    opts = [o.split("=")[0] for o in method.split("+")[1:]]
    if "decide_after" in opts and "reject_at" in opts:
        return "decide_after+reject_at"
    for f in ("reject_at", "decide_after", "k_tau"):
        if f in opts:
            return f
    return "plain" if method == "plain" else "bon" if method.startswith("bon") else "cbs"


def plot_frontier(points: list[Point], judges: list[str], budget: float, budget_label: str, title: str,
                  path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(judges), figsize=(16, 6.2))
    shown: dict[str, int] = {}  # method -> its index within its family (its marker)
    for p in points:
        shown[p.method] = sum(family(m) == family(p.method) for m in shown)
    for ax, j in zip(axes, judges):
        for p in points:
            mu, se = p.quality[j]
            ax.errorbar(p.tokens, mu, yerr=se, fmt=MARKERS[shown[p.method] % len(MARKERS)],
                        color=FAMILIES[family(p.method)], ms=7, capsize=3, label=p.label)
        ax.axvline(budget, color="#444", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"upstream completion tokens per answer (dotted: {budget_label})")
        ax.set_ylabel(f"{j} (mean ± s.e.)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=110)
