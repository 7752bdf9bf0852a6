"""Where results live: bench/results/<experiment>/, one folder per experiment (its .md, data, PNGs, adapters)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def experiment_dir(experiment: str) -> Path:
    return RESULTS / experiment


def result_path(experiment: str, suffix: str = "") -> Path:
    """bench/results/<experiment>/<experiment><suffix>.md, e.g. suffix "_quick" or "_cuda"."""
    return RESULTS / experiment / f"{experiment}{suffix}.md"


def write_result(experiment: str, text: str, out: str | Path | None = None, suffix: str = "") -> Path:
    """The report to --out, or to its experiment's folder."""
    path = Path(out) if out else result_path(experiment, suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def kept_stamp(path: Path, fresh: str) -> str:
    """A report rebuilt from stored data keeps the stamp (date; machine) of the run that measured it: the
    third line of the report already at `path`. `fresh` where there is none."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return fresh
    return lines[2] if len(lines) > 2 and lines[2] else fresh
