"""A real local Ray cluster for the tests: `ray start --head --block`, on ports of its own.

Every port Ray would otherwise take at a fixed number (GCS 6379, the dashboard
agent, metrics) is a free one picked here, and its files
live under a short private RAY_TMPDIR, so two test runs on one machine do not
meet. Stopping it kills the process group that `ray start --block` leads
(raylet, GCS and every worker), never `ray stop`, which would end any other
Ray cluster on the machine too.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalRayCluster:
    """`with LocalRayCluster(num_cpus=2) as c:` -> c.address for `--ray-address`, c.env for drivers."""

    def __init__(self, num_cpus: int = 2):
        self.num_cpus = num_cpus
        # Short: Ray's socket paths live under it and must fit in 107 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="w2r", dir="/tmp"))
        self.proc: subprocess.Popen | None = None
        self.address = ""
        # Workers import the project from this checkout (the one under test), and use one
        # torch thread unless told otherwise.
        self.env = {**os.environ, "RAY_TMPDIR": str(self.tmp), "HF_HUB_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def __enter__(self) -> "LocalRayCluster":
        ports = free_ports(7)
        gcs, agent_http, agent_grpc, metrics, rt_env, node_mgr, obj_mgr = ports
        lo, hi = _worker_port_range(avoid=ports)
        self.address = f"127.0.0.1:{gcs}"
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
               "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", str(self.num_cpus),
               "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(agent_http),
               "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
               "--runtime-env-agent-port", str(rt_env), "--node-manager-port", str(node_mgr),
               "--object-manager-port", str(obj_mgr), "--min-worker-port", str(lo),
               "--max-worker-port", str(hi), "--object-store-memory", str(200 * 2**20),
               "--temp-dir", str(self.tmp)]
        self.log = self.tmp / "ray-start.log"
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if "Ray runtime started" in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"ray start did not come up in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
            except ProcessLookupError:
                pass
            self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()


def _worker_port_range(avoid: list[int], width: int = 200) -> tuple[int, int]:
    """A block of ports no one listens on now (Ray's workers bind inside it), below the kernel's ephemeral range:
    the other components' ports are ephemeral ones (free_ports), and Ray refuses a worker range that holds any of
    them (a flaky `worker_ports ... used by other components` when the block was drawn from the same range)."""
    top = _ephemeral_low() - width - 1
    for _ in range(100):
        lo = random.randint(min(20000, top), top)
        block = range(lo, lo + width + 1)
        if not set(block) & set(avoid) and all(_bindable(p) for p in block):
            return lo, lo + width
    raise RuntimeError("no free block of ports for Ray's workers")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
