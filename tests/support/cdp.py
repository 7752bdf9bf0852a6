"""A real headless Chromium, driven over the Chrome DevTools Protocol, for the page's tests.

Debian's `chromium` package (.ci/run installs it): no browser download, no
driver. The protocol is JSON over one websocket; aiohttp, already a dependency,
is the client. Every request a page makes is recorded (Network events), and
every uncaught script error too, so a test can assert on both.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--mute-audio", "--window-size=1440,960",
    # Belt and braces: even a request the page should never make could not resolve a name.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
]


def require_chromium() -> None:
    """Skip where no Chromium is installed, unless this run must have one (CI sets W2S_REQUIRE_BROWSER)."""
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("W2S_REQUIRE_BROWSER"):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (see .ci/run)")
    pytest.skip("no Chromium installed (apt-get install chromium)")


class CDPError(RuntimeError):
    pass


class Browser:
    def __init__(self, proc: subprocess.Popen, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.proc, self.ws, self.http = proc, ws, session
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.pages: dict[str, Page] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, profile: Path) -> "Browser":
        """A fresh browser with its own empty profile in `profile`."""
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().split()) == 2:
                break
            if proc.poll() is not None:
                raise CDPError(f"chromium exited with status {proc.returncode}")
            await asyncio.sleep(0.1)
        else:
            proc.kill()
            raise CDPError("chromium did not open its DevTools port in 30 s")
        port, path = port_file.read_text().split()
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        return cls(proc, ws, session)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.waiting.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            elif data.get("sessionId") in self.pages:
                self.pages[data["sessionId"]].events.append((data["method"], data.get("params", {})))

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict:
        msg_id = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[msg_id] = fut
        msg = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        await self.ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def new_page(self, width: int = 1440, height: int = 960) -> "Page":
        target = (await self.send("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        page = self.pages[session] = Page(self, session)
        for domain in ("Page", "Runtime", "Network", "DOM", "Log"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        return page

    async def close(self) -> None:
        try:
            await self.send("Browser.close")
        except Exception:  # noqa: BLE001 - it may be gone already; the process is stopped below
            pass
        self.reader.cancel()
        await self.ws.close()
        await self.http.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session
        self.events: list[tuple[str, dict]] = []

    async def send(self, method: str, **params: Any) -> dict:
        return await self.browser.send(method, self.session, **params)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited); a script error raises."""
        got = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in got:
            raise CDPError(f"{expression[:80]}...: {got['exceptionDetails'].get('exception', {}).get('description')}")
        return got["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30, every: float = 0.1) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise TimeoutError(f"not true after {timeout:g} s: {expression}")
            await asyncio.sleep(every)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def hover(self, selector: str) -> None:
        """The mouse over the middle of the first element matching `selector`."""
        box = await self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                  ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])

    async def set_files(self, selector: str, *paths: Path) -> None:
        doc = await self.send("DOM.getDocument")
        node = await self.send("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector=selector)
        await self.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(p) for p in paths])

    async def drop(self, path: Path, x: float = 700, y: float = 400) -> None:
        """Drag the file at `path` onto the page and drop it at (x, y), as a user would."""
        data = {"items": [], "files": [str(path)], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            await self.send("Input.dispatchDragEvent", type=kind, x=x, y=y, data=data)

    def requests(self) -> list[dict]:
        """Every request the page made: {"url", "method", "headers"}."""
        return [p["request"] for m, p in self.events if m == "Network.requestWillBeSent"]

    def browser_errors(self) -> list[str]:
        """What the browser itself complained about (a Content-Security-Policy violation, a bad
        attribute...), leaving out failed HTTP statuses, which a test asks for on purpose."""
        return [p["entry"]["text"] for m, p in self.events if m == "Log.entryAdded"
                and p["entry"]["level"] == "error" and p["entry"].get("source") != "network"]

    def script_errors(self) -> list[str]:
        return [p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"].get("text", "")
                for m, p in self.events if m == "Runtime.exceptionThrown"]
