"""Anthropic endpoint: POST /v1/messages (plain and streaming)."""
from __future__ import annotations

import json

from aiohttp import web

from w2s.proxy.api import anthropic_bodies as ab
from w2s.proxy.api import anthropic_tools as at
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
    """message_start once round one is in (input tokens known), a text block, a tool_use block per call
    (its input whole in one input_json_delta), message_stop."""

    best_only = True

    def __init__(self, job: Job, msg_id: str):
        self.job, self.msg_id = job, msg_id
        self.blocks = 0  # content blocks opened so far
        self.text_open = False

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        await sse.send(ab.message_start(self.job, self.msg_id, input_tokens), event="message_start")
        if not self.job.prompt.whole_answers:  # a whole answer may be only tool calls: its text block waits
            await self._open_text(sse)
        await sse.send(pa.Ping(), event="ping")

    async def _open_text(self, sse: EventStream) -> None:
        await sse.send(pa.ContentBlockStart(index=self.blocks, content_block=pa.TextBlock(text="")),
                       event="content_block_start")
        self.blocks, self.text_open = self.blocks + 1, True

    async def text(self, sse: EventStream, index: int, text: str) -> None:
        if not self.text_open:
            await self._open_text(sse)
        await sse.send(pa.ContentBlockDelta(index=self.blocks - 1, delta=pa.TextDelta(text=text)),
                       event="content_block_delta")

    async def calls(self, sse: EventStream, index: int, answer: Answer) -> None:
        await self._close_text(sse)
        for call in answer.tool_calls:
            block = at.tool_use(call)
            i, self.blocks = self.blocks, self.blocks + 1
            start = block.model_copy(update={"input": {}})
            await sse.send(pa.ContentBlockStart(index=i, content_block=start), event="content_block_start")
            delta = pa.InputJsonDelta(partial_json=json.dumps(block.input))
            await sse.send(pa.ContentBlockDelta(index=i, delta=delta), event="content_block_delta")
            await sse.send(pa.ContentBlockStop(index=i), event="content_block_stop")

    async def _close_text(self, sse: EventStream) -> None:
        if self.text_open:
            await sse.send(pa.ContentBlockStop(index=self.blocks - 1), event="content_block_stop")
            self.text_open = False

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        if self.blocks == 0:  # an empty answer still has its (empty) text block
            await self._open_text(sse)
        await self._close_text(sse)

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        await sse.send(ab.message_delta(result, self.job), event="message_delta")
        await sse.send(pa.MessageStop(), event="message_stop")

    async def error(self, sse: EventStream, err: W2SError) -> None:
        await sse.send(anthropic_body(err), event="error")
