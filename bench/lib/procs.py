"""Child processes of a bench (servers, workers): a child that dies is reported at once, with its stderr.

    with Child("proxy", [sys.executable, "-m", "w2s.proxy.cli", "serve", ...]) as proxy:
        await proxy.wait_http(f"{base}/ready", timeout=300)   # raises ChildDied the moment it exits
"""
from __future__ import annotations

import asyncio
import collections
import socket
import subprocess
import sys
import threading
import time

from bench.lib.results import ROOT

TAIL_LINES = 40


class ChildDied(RuntimeError):
    """A child exited while the bench still needed it; the message carries its exit status and stderr."""


class Child:
    """A subprocess whose stderr is kept (its last lines) and, with echo, also passed to ours."""

    def __init__(self, name: str, cmd: list[str], *, env: dict | None = None, cwd=ROOT, echo: bool = True,
                 stdout=None):
        self.name, self.echo = name, echo
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
        self._reader = threading.Thread(target=self._read, name=f"stderr of {name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.tail.append(line)
            if self.echo:
                sys.stderr.write(f"[{self.name}] {line}")

    def stderr_tail(self) -> str:
        self._reader.join(timeout=2)  # the pipe's last lines
        return "".join(self.tail).rstrip() or "(nothing on stderr)"

    def check(self) -> None:
        """Raise ChildDied if the child has exited."""
        rc = self.proc.poll()
        if rc is not None:
            raise ChildDied(f"{self.name} exited with status {rc}; its stderr ends:\n{self.stderr_tail()}")

    async def wait_http(self, url: str, timeout: float, interval: float = 0.25) -> None:
        """Until `url` answers 200, polling the child between tries: its death, or a /ready that says
        "failed", ends the wait at once."""
        import aiohttp

        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                self.check()
                try:
                    async with http.get(url) as r:
                        if r.status == 200:
                            return
                        body = await r.text()
                        if '"failed"' in body:  # /ready: the models failed to load; the server stays up
                            raise ChildDied(f"{self.name}: {url} says {body.strip()}; its stderr ends:\n"
                                            f"{self.stderr_tail()}")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: {url} not ready after {timeout:.0f} s; its stderr ends:\n"
                                       f"{self.stderr_tail()}")
                await asyncio.sleep(interval)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def wait_all(children: list[Child], interval: float = 0.5) -> None:
    """Until every child exits 0; the first that fails stops the others and raises ChildDied with its stderr."""
    while True:
        codes = [c.proc.poll() for c in children]
        for c, rc in zip(children, codes):
            if rc not in (None, 0):
                for other in children:
                    other.stop()
                c.check()
        if all(rc == 0 for rc in codes):
            return
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_cmd(script: str, *args: str) -> list[str]:
    """The command that runs bench script `script` (a name such as "sentiment") as a child."""
    return [sys.executable, "-m", f"bench.{script}", *args]


def w2s_cmd(*args: str) -> list[str]:
    """The command that runs the `w2s` CLI as a child (this interpreter, not whatever `w2s` is on PATH)."""
    return [sys.executable, "-m", "w2s.proxy.cli", *args]
