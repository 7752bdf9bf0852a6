"""Server-sent events over an aiohttp StreamResponse.

The response is prepared lazily, on the first event: until then a failure
(overload, bad override, an upstream down in round one) can still go out as a
plain HTTP error with its real status instead of an error event inside a 200.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel


def _json(data: Any) -> str:
    if isinstance(data, BaseModel):
        return data.model_dump_json()
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class EventStream:
    def __init__(self, request: web.Request, headers: dict[str, str] | None = None):
        self.request = request
        self.response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not hold events back
            **(headers or {}),
        })

    @property
    def started(self) -> bool:
        return self.response.prepared

    async def start(self) -> None:
        if not self.started:
            await self.response.prepare(self.request)

    async def send(self, data: Any, event: str | None = None) -> None:
        """One event; `data` is a pydantic model, a JSON-able value, or a raw string."""
        await self.start()
        payload = data if isinstance(data, str) else _json(data)
        head = f"event: {event}\n" if event else ""
        await self.response.write(f"{head}data: {payload}\n\n".encode())

    async def comment(self, text: str = "keep-alive") -> None:
        await self.start()
        await self.response.write(f": {text}\n\n".encode())

    async def finish(self) -> web.StreamResponse:
        await self.start()
        await self.response.write_eof()
        return self.response
