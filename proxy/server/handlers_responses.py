"""OpenAI Responses API: POST /v1/responses (plain and streaming), GET and DELETE /v1/responses/{id}.

The same plan/run path as chat completions (`Service.job`, `Service.run`, the one
streaming driver); what is particular here is the event sequence and the store
(proxy/server/response_store.py): a stored response can be read back and
continued with `previous_response_id`.
"""
from __future__ import annotations

from aiohttp import web

from w2s.proxy.api import protocol_responses as pr
from w2s.proxy.api import responses_bodies as rb
from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.types import Answer, SearchResult
from w2s.proxy.server.response_store import ResponseStore
from w2s.proxy.server.service import SERVICE, read_body, stats_headers
from w2s.proxy.server.sse import EventStream
from w2s.proxy.server.streaming import stream_search

STORE = web.AppKey("w2s_responses", ResponseStore)


async def create(request: web.Request) -> web.StreamResponse:
    svc, store = request.app[SERVICE], request.app[STORE]
    req = await read_body(request, pr.ResponsesRequest)
    if req.previous_response_id is not None:
        req.set_history(list(store.get(req.previous_response_id, "previous_response_id").conversation))
    job = svc.job(request, req)
    shell = rb.Shell.of(req, job)
    if req.stream:
        return await stream_search(svc, request, job, _Events(job, shell, store))
    result = await svc.run(job, request)
    resp = rb.response(shell, result, job)
    _keep(store, req, resp, result.best)
    return web.json_response(resp.model_dump(mode="json"), headers=stats_headers(result, job))


async def retrieve(request: web.Request) -> web.Response:
    got = request.app[STORE].get(request.match_info["response_id"])
    return web.json_response(got.body)


async def delete(request: web.Request) -> web.Response:
    resp_id = request.match_info["response_id"]
    request.app[STORE].delete(resp_id)
    return web.json_response(pr.DeletedResponse(id=resp_id).model_dump(mode="json"))


def _keep(store: ResponseStore, req: pr.ResponsesRequest, resp: pr.Response, best: Answer) -> None:
    """Store a finished response unless `store: false`: its body, and its conversation for the next turn
    (which continues from the best answer, its tool calls included)."""
    if req.store is False:
        return
    turn: dict = {"role": "assistant", "content": best.text}
    if best.tool_calls:
        turn = {"role": "assistant", "content": best.text or None,
                "tool_calls": [c.as_message_call() for c in best.tool_calls]}
    conversation = [*req._history, *req.conversation(), turn]
    store.put(resp.id, resp.model_dump(mode="json"), conversation)


class _Events:
    """created and in_progress once round one is in; per answer its message item (unless it is only tool
    calls), then a function_call item per call; then completed / incomplete."""

    best_only = False  # `w2s.n` answers are output items in order

    def __init__(self, job: Job, shell: rb.Shell, store: ResponseStore):
        self.job, self.shell, self.store = job, shell, store
        self.seq = rb.Events()
        self.started = False
        self.out = 0  # output items so far (each item's output_index)
        self.item_ids: list[list[str]] = []  # per answer, its items' ids
        self.message: tuple[int, str] | None = None  # the open message item: (output_index, id)

    async def _send(self, sse: EventStream, *events: dict) -> None:
        for e in events:
            await sse.send(e, event=e["type"])

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        if not self.started:
            self.started = True
            start = self.shell.response("in_progress")
            await self._send(sse, self.seq.lifecycle("response.created", start),
                             self.seq.lifecycle("response.in_progress", start))
        self.item_ids.append([])
        if not self.job.prompt.whole_answers:  # a whole answer may be only calls: its message waits for text
            await self._open_message(sse, index)

    async def _open_message(self, sse: EventStream, index: int) -> None:
        self.message = (self.out, new_id("msg_"))
        self.item_ids[index].append(self.message[1])
        self.out += 1
        await self._send(sse, *self.seq.item_added(*self.message))

    async def text(self, sse: EventStream, index: int, text: str) -> None:
        if self.message is None:
            await self._open_message(sse, index)
        await self._send(sse, self.seq.delta(*self.message, text))

    async def calls(self, sse: EventStream, index: int, answer: Answer) -> None:
        await self._close_message(sse, answer)
        for fc in rb.function_calls(answer):
            self.item_ids[index].append(fc.id)
            await self._send(sse, *self.seq.call(self.out, fc))
            self.out += 1

    async def _close_message(self, sse: EventStream, answer: Answer) -> None:
        if self.message is not None:
            at, item_id = self.message
            self.message = None
            await self._send(sse, *self.seq.item_done(at, rb.message(answer, self.shell.request, item_id)))

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        if not self.item_ids[index]:  # an empty answer still has its (empty) message
            await self._open_message(sse, index)
        await self._close_message(sse, answer)

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        resp = rb.response(self.shell, result, self.job, self.item_ids)
        _keep(self.store, self.shell.request, resp, result.best)
        # response.completed even when cut by the token limit (status "incomplete", incomplete_details set):
        # the SDKs' stream helpers and the Codex CLI take response.incomplete for a failed stream.
        await self._send(sse, self.seq.lifecycle("response.completed", resp))

    async def error(self, sse: EventStream, err: W2SError) -> None:
        await self._send(sse, self.seq.lifecycle("response.failed", rb.failed(self.shell, err)))
