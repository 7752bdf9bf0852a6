"""Anthropic endpoint: POST /v1/messages (plain and streaming)."""
from __future__ import annotations

from aiohttp import web

from w2s.proxy.api import anthropic_bodies as ab
from w2s.proxy.api import protocol_anthropic as pa
from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id
from w2s.proxy.api.wire_errors import anthropic_body
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.types import Answer, SearchResult
from w2s.proxy.server.service import SERVICE, read_body, stats_headers
from w2s.proxy.server.sse import EventStream
from w2s.proxy.server.streaming import stream_search


async def messages(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    req = await read_body(request, pa.MessagesRequest)
    job = svc.job(request, req)
    msg_id = new_id("msg_")
    if req.stream:
        return await stream_search(svc, request, job, _Events(job, msg_id))
    result = await svc.run(job, request)
    return web.json_response(ab.message(result, job, msg_id).model_dump(mode="json"),
                             headers=stats_headers(result, job))


class _Events:
    """message_start once round one is in (input tokens known), one text block, message_stop."""

    best_only = True

    def __init__(self, job: Job, msg_id: str):
        self.job, self.msg_id = job, msg_id

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        await sse.send(ab.message_start(self.job, self.msg_id, input_tokens), event="message_start")
        await sse.send(pa.ContentBlockStart(content_block=pa.TextBlock(text="")), event="content_block_start")
        await sse.send(pa.Ping(), event="ping")

    async def text(self, sse: EventStream, index: int, text: str) -> None:
        await sse.send(pa.ContentBlockDelta(delta=pa.TextDelta(text=text)), event="content_block_delta")

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        await sse.send(pa.ContentBlockStop(), event="content_block_stop")

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        await sse.send(ab.message_delta(result, self.job), event="message_delta")
        await sse.send(pa.MessageStop(), event="message_stop")

    async def error(self, sse: EventStream, err: W2SError) -> None:
        await sse.send(anthropic_body(err), event="error")
