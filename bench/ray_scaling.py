"""`w2s batch --ray`: 1 worker x 2 threads against 2 workers x 1 thread, on one real local Ray cluster.

A local cluster (`ray start --head --num-cpus 2`, tests/ray_cluster.py) and the real
CLI as the driver. Each phase runs the same seeded items on the embedded config
(route `w2s-default`: Gemma 3 270M base upstream, SmolLM2 prompted pair; max_tokens
16), with as many items in flight in all (`--in-flight`, default 2) either way:

    1x2  --ray-workers 1 --threads 2 --ray-cpus 2 --concurrency 2   one engine, two torch threads
    2x1  --ray-workers 2 --threads 1 --ray-cpus 1 --concurrency 1   two engines, one thread each

Phases alternate 1x2, 2x1, 2x1, 1x2 (--quick: 1x2, 2x1) so the machine's noise
hits both; rows of one setting are summed. Throughput is items / the driver's
"running" seconds (after every worker has loaded); what each worker costs (its
load time, its peak RSS: its own copy of the models) comes from the workers.

    python -m bench.ray_scaling            # about 10 min on 2 shared cores
    python -m bench.ray_scaling --quick    # about 4 min

`--settings 1x1,2x1` compares one worker x 1 thread with two instead: what one more
worker adds (bench/results/ray_workers/ray_workers.md).

Writes bench/results/ray_scaling/ray_scaling.md (ray_scaling_quick.md with --quick, or --out).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.machine import machine, today
from bench.lib.prompts import PROMPTS
from bench.lib.results import ROOT
from bench.lib.runner import run_main
from bench.lib.tables import table
from bench.lib.testkit import LocalRayCluster

NOTE = ("the torch threads above are the driver's, each worker's are in the table; "
        "CPU only, shared with other jobs (timings noisy)")
SETTINGS = {  # name -> (workers, threads per worker)
    "1x2": (1, 2),
    "2x1": (2, 1),
    "1x1": (1, 1),  # with 2x1 (--settings 1x1,2x1): what one more worker adds
}


@dataclass
class Phase:
    name: str
    items: int = 0
    done: int = 0
    run_seconds: float = 0.0
    driver_load_seconds: float = 0.0
    worker_load: list[float] = field(default_factory=list)
    worker_rss: list[float] = field(default_factory=list)
    per_worker: list[int] = field(default_factory=list)


def write_items(path: Path, n: int, max_tokens: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"b{i}", "prompt": PROMPTS[i % len(PROMPTS)], "seed": 100 + i,
                                "max_tokens": max_tokens}) + "\n")


def run_phase(cluster: LocalRayCluster, name: str, inp: Path, work: Path, in_flight: int) -> Phase:
    workers, threads = SETTINGS[name]
    out = work / f"out-{name}-{time.monotonic_ns()}.jsonl"
    cmd = [sys.executable, "-m", "w2s.proxy.cli", "--threads", str(threads), "batch", str(inp), "-o", str(out),
           "--model", "w2s-default", "--ray", "--ray-address", cluster.address, "--ray-workers", str(workers),
           "--ray-cpus", str(threads), "--concurrency", str(max(1, in_flight // workers)), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=3600)
    err = proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the batch failed ({proc.returncode}):\n{err[-3000:]}")
    ph = Phase(name, items=sum(1 for _ in open(inp)))
    ph.done = int(re.search(r"w2s batch: (\d+) done", err).group(1))
    m = re.search(r"time: ([\d.]+) s loading \+ ([\d.]+) s running", err)
    ph.driver_load_seconds, ph.run_seconds = float(m.group(1)), float(m.group(2))
    ready = re.search(r"Ray worker\(s\) ready: (.*)", err).group(1)
    for load, rss in re.findall(r"loaded in ([\d.]+) s, (\d+) MB", ready):
        ph.worker_load.append(float(load))
        ph.worker_rss.append(float(rss))
    ph.per_worker = [int(n) for n in re.findall(r": (\d+) items", re.search(r"ray workers: (.*)", err).group(1))]
    print(f"  {name}: {ph.done} items in {ph.run_seconds:.1f} s (+{ph.driver_load_seconds:.1f} s loading), "
          f"per worker {ph.per_worker}", file=sys.stderr, flush=True)
    return ph


async def run(args):
    a, b = args.settings.split(",")
    order = [a, b] if args.quick else [a, b, b, a]
    n = args.items or (8 if args.quick else 24)
    phases = []
    with tempfile.TemporaryDirectory(prefix="w2s-ray-bench") as tmp, LocalRayCluster(num_cpus=2) as cluster:
        work = Path(tmp)
        inp = work / "in.jsonl"
        write_items(inp, n, args.max_tokens)
        for name in order:
            phases.append(run_phase(cluster, name, inp, work, args.in_flight))
    return (phases, n)


def report(phases: list[Phase], n: int, args, elapsed: float) -> str:
    rows, rate = [], {}
    names = list(dict.fromkeys(p.name for p in phases))
    for name in names:
        mine = [p for p in phases if p.name == name]
        done, secs = sum(p.done for p in mine), sum(p.run_seconds for p in mine)
        rate[name] = 60 * done / secs
        workers, threads = SETTINGS[name]
        loads = [x for p in mine for x in p.worker_load]
        rss = [x for p in mine for x in p.worker_rss]
        rows.append([name, workers, threads, args.in_flight, done, round(secs, 1),
                     round(sum(loads) / len(loads), 1), round(max(rss)), round(workers * max(rss)),
                     round(rate[name], 2), " / ".join(f"{p.run_seconds:.1f}" for p in mine),
                     " / ".join(str(p.per_worker) for p in mine)])
    base, other = names
    for r in rows:
        r.insert(10, round(rate[r[0]] / rate[base], 2))
    head = ["setting", "workers", "torch threads / worker", "items in flight", "answers", "running s",
            "worker load s (mean)", "RSS / worker after loading MB", "RSS in all MB", "answers / min",
            f"throughput vs {base}", "running s (each run)", "items per worker (each run)"]
    return "\n".join([
        f"# `w2s batch --ray`: {_words(base)} against {_words(other)} (bench/ray_scaling.py)", "",
        f"{today()}; {machine(note=NOTE)}.", "",
        f"A local Ray cluster (`ray start --head --num-cpus 2`), the real CLI as the driver. Embedded config.yaml, "
        f"route `w2s-default` (Gemma 3 270M base upstream, SmolLM2 prompted pair, W=K=2, L=10), max_tokens "
        f"{args.max_tokens}, {n} seeded items per run, {args.in_flight} items in flight in all. Runs in the order "
        f"{', '.join(p.name for p in phases)}; rows of one setting are summed. Total {elapsed:.0f} s.", "",
        table(head, rows), "",
        f"{_words(other)}: {rate[other] / rate[base]:.2f}x the throughput of {_words(base)}, "
        f"for {rows[1][8] / max(1, rows[0][8]):.2f}x the memory.", "",
    ])


def _words(setting: str) -> str:
    workers, threads = SETTINGS[setting]
    return f"{workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, help="items per run (default 24; --quick 8)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--in-flight", type=int, default=2, help="items in flight in all, both settings")
    ap.add_argument("--settings", default="1x2,2x1", choices=["1x2,2x1", "1x1,2x1"],
                    help="the two settings compared (WORKERSxTHREADS), the first is the baseline")
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("ray_scaling", parser(), run, report, argv)


if __name__ == "__main__":
    main()
