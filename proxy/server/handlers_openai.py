"""OpenAI endpoints: /v1/chat/completions, /v1/completions, /v1/models."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from w2s.proxy.api import openai_bodies as ob
from w2s.proxy.api import protocol_openai as po
from w2s.proxy.api.job import Job
from w2s.proxy.api.trace import w2s_field
from w2s.proxy.api.wire_errors import openai_body
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.types import Answer, SearchResult
from w2s.proxy.server.service import SERVICE, Service, read_body, stats_headers
from w2s.proxy.server.sse import EventStream
from w2s.proxy.server.streaming import stream_search

if TYPE_CHECKING:
    from w2s.proxy.engine import RouteInfo


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, po.ChatCompletionRequest, ob.CHAT_URL)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, po.CompletionRequest, ob.TEXT_URL)


async def _complete(request: web.Request, model: type[po.ChatCompletionRequest | po.CompletionRequest],
                    url: str) -> web.StreamResponse:
    svc: Service = request.app[SERVICE]
    req = await read_body(request, model)
    job = svc.job(request, req)
    if req.stream:
        chunks = ob.ChatChunks(job) if url == ob.CHAT_URL else ob.TextChunks(job)
        return await stream_search(svc, request, job, _Events(job, chunks, req.include_usage))
    result = await svc.run(job, request)
    return web.json_response(ob.body_for(url, result, job).model_dump(mode="json"),
                             headers=stats_headers(result, job))


class _Events:
    """OpenAI stream events: a role chunk and a finish chunk per choice, `data: [DONE]` at the end."""

    best_only = False

    def __init__(self, job: Job, chunks: ob.ChatChunks | ob.TextChunks, include_usage: bool):
        self.job, self.chunks, self.include_usage = job, chunks, include_usage

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        role = self.chunks.role(index)
        if role is not None:
            await sse.send(role)

    async def text(self, sse: EventStream, index: int, text: str) -> None:
        await sse.send(self.chunks.text(index, text))

    async def calls(self, sse: EventStream, index: int, answer: Answer) -> None:
        await sse.send(self.chunks.calls(index, answer))  # chat only: completions answers never call tools

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        await sse.send(self.chunks.finish(index, ob.finish_reason(answer)))

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        w2s = w2s_field(result, self.job)  # the trace, or what degraded: in a last chunk with no choices
        if self.include_usage:
            await sse.send(self.chunks.event([], usage=ob.usage(result, self.job), w2s=w2s))
        elif w2s is not None:
            await sse.send(self.chunks.event([], w2s=w2s))
        await sse.send("[DONE]")

    async def error(self, sse: EventStream, err: W2SError) -> None:
        await sse.send(openai_body(err))


async def list_models(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    cards = [_card(svc, info) for info in svc.loaded().routes()]
    return web.json_response(po.ModelList(data=cards).model_dump(mode="json"))


async def get_model(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    info = svc.loaded().route_info(request.match_info["model"])  # NotFound -> 404
    return web.json_response(_card(svc, info).model_dump(mode="json"))


def _card(svc: Service, info: RouteInfo) -> po.ModelCard:
    # Route name, mode, description and what its upstream was found to do: keys and URLs stay private.
    engine = svc.loaded()
    upstream = info.config.upstream
    return po.ModelCard(id=info.name, created=svc.started_at, w2s={
        "mode": info.mode,
        "description": info.config.description,
        "exact_continuation": info.exact,
        "default": info.name == engine.config.default_route,
        "upstream": {"name": upstream, **engine.upstreams[upstream].capabilities()},
    })
