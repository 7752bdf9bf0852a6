"""Every server bench runs end to end in a small smoke mode, so a bench cannot rot silently.

Each runs as its README says (`python -m bench.<script>` from the repository root) with its --quick settings or
smaller, writes its report to a temporary file, and must exit 0 with its report (a markdown table, or for
odd_servers the transcripts). Numbers from these runs mean nothing; the committed results in bench/results/ come
from the full runs. bench/vllm_check.py needs a vLLM server (bench/vllm_check.sh installs one) and is only
import-checked, in tests/unit/test_bench_scripts.py.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

SMOKE = {  # bench -> its smoke arguments (--quick, made smaller where the bench allows)
    "latency": ["--quick", "--n1", "2", "--n8", "4", "--n32", "8", "--nref", "2", "--max-tokens", "16"],
    "limits_latency": ["--seconds", "4"],
    "cooldown": ["--quick", "--down", "6", "--after", "3"],
    "odd_servers": [],
    "provider_cost": ["--prompts", "1", "--max-tokens", "20", "--l", "10", "--threads", "1"],
    "overhead": ["--quick"],
    "batching": ["--quick", "--requests", "2", "--clients", "2"],
    "ray_scaling": ["--quick", "--items", "2"],
}
WRITES_NO_FILE = {"provider_cost"}  # prints its table only
NEEDS = {"ray_scaling": "ray"}
LIMIT_S = 900


@pytest.mark.parametrize("bench", list(SMOKE))
def test_server_bench_smoke(bench, tmp_path):
    if bench in NEEDS:
        pytest.importorskip(NEEDS[bench])
    out = tmp_path / f"{bench}.md"
    cmd = [sys.executable, "-m", f"bench.{bench}", *SMOKE[bench]]
    if bench not in WRITES_NO_FILE:
        cmd += ["--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, f"{' '.join(cmd[1:])} exited {done.returncode}:\n{done.stderr[-4000:]}"
    text = out.read_text() if bench not in WRITES_NO_FILE else done.stdout
    assert ("|---" in text) or ("```" in text and text.startswith("# ")), text[-2000:]  # a table, or transcripts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_child_that_dies_is_reported_at_once_with_its_stderr():
    """What bench/latency.py lacked: it waited 300 s for a proxy that had died at start."""
    from bench.lib.procs import Child, ChildDied

    code = "import sys, time; time.sleep(0.5); sys.stderr.write('ImportError: no module named proxy\\n'); sys.exit(3)"
    t0 = time.monotonic()
    with Child("proxy", [sys.executable, "-c", code], echo=False) as child:
        with pytest.raises(ChildDied) as err:
            asyncio.run(child.wait_http(f"http://127.0.0.1:{_free_port()}/ready", timeout=300))
    assert time.monotonic() - t0 < 30
    assert "status 3" in str(err.value) and "no module named proxy" in str(err.value)


def test_a_failed_worker_stops_the_others():
    from bench.lib.procs import Child, ChildDied, wait_all

    sleeper = Child("worker 1", [sys.executable, "-c", "import time; time.sleep(60)"], echo=False)
    failing = Child("worker 0", [sys.executable, "-c", "import sys; sys.exit('out of memory')"], echo=False)
    t0 = time.monotonic()
    with pytest.raises(ChildDied, match="out of memory"):
        asyncio.run(wait_all([sleeper, failing], interval=0.1))
    assert time.monotonic() - t0 < 30
    assert sleeper.proc.poll() is not None


def test_latency_reports_a_proxy_that_dies_at_start(tmp_path):
    """The regression of issue #21: a proxy that cannot start (here: a config it refuses) is reported at once."""
    from bench.latency import start_proxy
    from bench.lib.procs import ChildDied

    cfg = {"server": {"host": "127.0.0.1"}, "routes": {"r": {"upstream": "nowhere"}}}
    port = _free_port()
    t0 = time.monotonic()
    with start_proxy(cfg, port, ENV, threads=1) as proxy:
        with pytest.raises(ChildDied):
            asyncio.run(proxy.wait_http(f"http://127.0.0.1:{port}/ready", 300))
    assert time.monotonic() - t0 < 120
