"""Shared bits for the benches: machine line, markdown tables, stats, threads."""
from __future__ import annotations

import asyncio
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Short neutral review openings for the server benches (bench/openings.py has 120 for sentiment).
PROMPTS = [
    "I watched this movie last night and",
    "The first twenty minutes of this film",
    "My brother recommended this one to me, so",
    "The story follows a young woman who moves to the city and",
    "When the lights went down in the theater,",
    "This is the third film by the director, and",
    "I rented this movie on a Friday night because",
    "The soundtrack was composed by a newcomer, and",
]


def threads_arg(ap) -> None:
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (0 = torch's default). 1 by default: on a shared 2-core "
                         "machine 2 spin-waiting threads are several times slower")


def set_threads(n: int | None) -> int:
    """torch intra-op threads. On a shared 2-core box 1 thread is several times
    faster than 2 when another process is busy (spin-waiting workers)."""
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def machine(device: str = "cpu", note: str = "") -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{os.cpu_count()} cores ({cpu})", f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)"]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.insert(0, torch.cuda.get_device_name(0))
    try:
        load = os.getloadavg()
        parts.append(f"load average at end {load[0]:.1f}")
    except OSError:
        pass
    if note:
        parts.append(note)
    return "; ".join(parts)


def today() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            if math.isnan(v):
                return "—"
            if v != 0 and abs(v) < 0.01:
                return f"{v:.2g}"
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(v) for v in r) + " |")
    return "\n".join(out)


def mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    if n == 1:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def win_rate(a: list[float], b: list[float]) -> float:
    """The share of pairs where a beats b, a tie counting half."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / len(a)


def write_result(name: str, text: str, out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_main(name: str, ap, run, report) -> None:
    """Parse, run, report, print and write: `run(args)` -> a tuple `report(*it, args, elapsed)` takes.
    Writes results/<name>.md, or <name>_quick.md with --quick, or --out."""
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = asyncio.run(run(args))
    text = report(*result, args, time.perf_counter() - t0)
    print(text)
    quick = "_quick" if getattr(args, "quick", False) else ""
    print(f"wrote {write_result(name + quick, text, args.out)}", file=sys.stderr)


async def until_loaded(client) -> None:
    """Wait for an app that loads its models in the background (503 until then); `client`: AsyncOpenAI."""
    import openai

    while True:
        try:
            await client.models.list()
            return
        except openai.APIStatusError:
            await asyncio.sleep(0.5)


def w2s_check(config: dict, upstream: str) -> tuple[int, str]:
    """Run `w2s check UPSTREAM` in a subprocess on `config` -> (exit status, what it printed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.json"  # JSON is YAML
        path.write_text(json.dumps(config))
        done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "--config", str(path), "check", upstream],
                              cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                              timeout=600)
    return done.returncode, (done.stdout + done.stderr).strip()
