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
    _keep(store, req, resp)
    return web.json_response(resp.model_dump(mode="json"), headers=stats_headers(result, job))


async def retrieve(request: web.Request) -> web.Response:
    got = request.app[STORE].get(request.match_info["response_id"])
    return web.json_response(got.body)


async def delete(request: web.Request) -> web.Response:
    resp_id = request.match_info["response_id"]
    request.app[STORE].delete(resp_id)
    return web.json_response(pr.DeletedResponse(id=resp_id).model_dump(mode="json"))


def _keep(store: ResponseStore, req: pr.ResponsesRequest, resp: pr.Response) -> None:
    """Store a finished response unless `store: false`: its body, and its conversation for the next turn."""
    if req.store is False:
        return
    best = resp.output[0].content[0].text  # the next turn continues from the best answer
    conversation = [*req._history, *req.conversation(), {"role": "assistant", "content": best}]
    store.put(resp.id, resp.model_dump(mode="json"), conversation)


class _Events:
    """created and in_progress once round one is in, an output item per answer, then completed / incomplete."""

    best_only = False  # `w2s.n` answers are output items 0..n-1

    def __init__(self, job: Job, shell: rb.Shell, store: ResponseStore):
        self.job, self.shell, self.store = job, shell, store
        self.seq = rb.Events()
        self.item_ids: list[str] = []

    async def _send(self, sse: EventStream, *events: dict) -> None:
        for e in events:
            await sse.send(e, event=e["type"])

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        if not self.item_ids:
            start = self.shell.response("in_progress")
            await self._send(sse, self.seq.lifecycle("response.created", start),
                             self.seq.lifecycle("response.in_progress", start))
        self.item_ids.append(new_id("msg_"))
        await self._send(sse, *self.seq.item_added(index, self.item_ids[index]))

    async def text(self, sse: EventStream, index: int, text: str) -> None:
        await self._send(sse, self.seq.delta(index, self.item_ids[index], text))

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        await self._send(sse, *self.seq.item_done(index, rb.message(answer, self.shell.request, self.item_ids[index])))

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        resp = rb.response(self.shell, result, self.job, self.item_ids)
        _keep(self.store, self.shell.request, resp)
        # response.completed even when cut by the token limit (status "incomplete", incomplete_details set):
        # the SDKs' stream helpers and the Codex CLI take response.incomplete for a failed stream.
        await self._send(sse, self.seq.lifecycle("response.completed", resp))

    async def error(self, sse: EventStream, err: W2SError) -> None:
        await self._send(sse, self.seq.lifecycle("response.failed", rb.failed(self.shell, err)))
