"""The bench tables as pictures: bench/results/{sentiment,latency}/<name>.md -> the same names as .png.

    pip install -e '.[bench]'      # matplotlib
    python -m bench.plots          # reads and writes bench/results/sentiment/ and latency/

It measures nothing: it draws what the benches wrote, so a picture always
matches its table (rerun it after a bench).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.lib.results import RESULTS

METHOD_COLORS = {"plain": "#9aa3ad", "BoN": "#4c78a8", "CBS": "#e07b00"}
PNG_META = {"Software": None}  # no version stamp: the same table draws the same file


def pyplot():
    """matplotlib (the bench extra), imported when a picture is drawn: parsing arguments needs none."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (plt.matplotlib.ticker below)

    return plt


def md_table(path: Path, first_header: str) -> list[dict[str, str]]:
    """The markdown table in `path` whose first column is `first_header`, as dicts by header."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header:
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(cells, _cells(body))))
            return rows
    raise SystemExit(f"{path}: no table starting with column {first_header!r}")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []


def number(cell: str) -> float:
    """'+0.323 ± 0.053' -> 0.323, '62%' -> 62.0, '1.2x' -> 1.2."""
    m = re.match(r"[+-]?\d+(\.\d+)?", cell.replace(",", ""))
    if m is None:
        raise ValueError(f"not a number: {cell!r}")
    return float(m.group(0))


def error(cell: str) -> float:
    return float(cell.split("±")[1]) if "±" in cell else 0.0


def color_of(method: str) -> str:
    return next((c for k, c in METHOD_COLORS.items() if method.startswith(k)), "#555")


def sentiment(src: Path, out: Path) -> Path:
    rows = md_table(src, "method")
    names = [r["method"] for r in rows]
    vader = [number(r["VADER compound (mean ± s.e.)"]) for r in rows]
    se = [error(r["VADER compound (mean ± s.e.)"]) for r in rows]
    cost = [number(r["upstream tokens / answer"]) for r in rows]
    colors = [color_of(n) for n in names]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.15, 1]})
    bars = left.barh(names[::-1], vader[::-1], xerr=se[::-1], color=colors[::-1], capsize=3)
    for bar, r in zip(bars, rows[::-1]):
        left.text(bar.get_width() + 0.07, bar.get_y() + bar.get_height() / 2,
                  f"{r['positive share']} positive", va="center", fontsize=8.5, color="#444")
    left.set_xlim(0, 1)
    left.set_xlabel("VADER compound of the continuation (mean ± s.e., 120 openings)")
    left.set_title("The judge's score of each method's answers", fontsize=10)
    for name, x, y, e, c in zip(names, cost, vader, se, colors):
        right.errorbar(x, y, yerr=e, fmt="o", color=c, capsize=3)
        left_side = name.startswith("BoN")  # BoN and CBS share costs: labels on either side
        right.annotate(name, (x, y), textcoords="offset points", xytext=(-7 if left_side else 7, 3),
                       ha="right" if left_side else "left", fontsize=8.5)
    right.set_xscale("log", base=2)
    right.set_xticks(sorted(set(cost)), [f"{c:g}" for c in sorted(set(cost))])
    right.set_xlabel("upstream tokens per answer (log scale)")
    right.set_ylabel("VADER compound")
    right.set_xlim(min(cost) / 1.6, max(cost) * 2.2)
    right.set_title("The judge's score against upstream cost", fontsize=10)
    right.grid(alpha=0.3)
    fig.suptitle("Controlled sentiment (bench/sentiment.py): Gemma 3 270M base, SmolLM2 prompted pair", fontsize=11)
    return _save(fig, out)


def latency(src: Path, out: Path) -> Path:
    rows = md_table(src, "concurrent requests")
    levels = [r for r in rows if r["concurrent requests"].isdigit()]
    reference = next((r for r in rows if not r["concurrent requests"].isdigit()), None)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    _times(left, levels)
    _throughput(right, levels, reference)
    fig.suptitle("Latency through the proxy (bench/latency.py): 200 ms upstream, CBS W=K=2, L=8, 32 tokens",
                 fontsize=11)
    return _save(fig, out)


def _times(ax, levels: list[dict[str, str]]) -> None:
    """Time per request against its floor, per concurrency level (log scale)."""
    xs = list(range(len(levels)))
    floor = [number(r["floor: rounds x latency + scoring (s)"]) for r in levels]
    e2e = [number(r["end-to-end mean (s)"]) for r in levels]
    p90 = [number(r["p90 (s)"]) for r in levels]
    w = 0.38
    ax.bar([x - w / 2 for x in xs], floor, w, label="floor: rounds x 200 ms + scoring", color="#9aa3ad")
    ax.bar([x + w / 2 for x in xs], e2e, w, yerr=[[0] * len(xs), [p - m for p, m in zip(p90, e2e)]],
           capsize=3, label="end-to-end mean (whisker: p90)", color="#e07b00")
    for x, r, top in zip(xs, levels, p90):
        ax.text(x + w / 2, top * 1.08, r["end-to-end / floor"] + "x floor", ha="center", fontsize=8.5)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(pyplot().matplotlib.ticker.FixedLocator([1, 2, 5, 10, 20, 50, 100]))
    ax.yaxis.set_major_formatter(pyplot().matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_locator(pyplot().matplotlib.ticker.NullLocator())
    ax.set_ylim(min(floor) / 1.5, max(p90) * 1.6)
    ax.set_xticks(xs, [r["concurrent requests"] for r in levels])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("seconds per request (log scale)")
    ax.set_title("Time per request against its floor", fontsize=10)
    ax.legend(fontsize=8.5, loc="upper left")


def _throughput(ax, levels: list[dict[str, str]], reference: dict[str, str] | None) -> None:
    """Requests per second per concurrency level, against the sequential loop."""
    xs = list(range(len(levels)))
    thr = [number(r["throughput (req/s)"]) for r in levels]
    ax.bar(xs, thr, 0.55, color="#4c78a8", label="through the proxy")
    for x, r, t in zip(xs, levels, thr):
        ax.text(x, t + 0.01, f"{r['vs sequential reference']} the sequential loop\nscorer busy {r['scorer busy']}",
                ha="center", va="bottom", fontsize=8.5)
    if reference is not None:
        ax.axhline(number(reference["throughput (req/s)"]), color="#444", ls="--", lw=1,
                   label="sequential reference (1 upstream call at a time)")
    ax.set_xticks(xs, [r["concurrent requests"] for r in levels])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("requests per second")
    ax.set_ylim(0, max(thr) * 1.45)
    ax.set_xlim(-0.75, len(xs) - 0.25)  # room for the first bar's label
    ax.set_title("Throughput against a sequential loop", fontsize=10)
    ax.legend(fontsize=8.5, loc="upper left")


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata=PNG_META)
    pyplot().close(fig)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where the experiments' folders are: reads and writes <name>/<name>.md and .png")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for name, draw in (("sentiment", sentiment), ("latency", latency)):
        print(draw(args.results / name / f"{name}.md", args.results / name / f"{name}.png"))


if __name__ == "__main__":
    main()
