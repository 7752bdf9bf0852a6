"""OpenAI endpoints: /v1/chat/completions, /v1/completions, /v1/models."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy import protocol_openai as po
from proxy import w2s_options
from proxy.search import committed_prefix
from proxy.serving import (
    SERVICE,
    Job,
    Service,
    new_id,
    now,
    prompt_tokens,
    read_body,
    stats_headers,
    suffix_after,
    trace_body,
    usage_counts,
)
from proxy.sse import EventStream
from proxy.types import RoundTrace, SearchResult
from proxy.wire_errors import openai_body

def _service(request: web.Request) -> Service:
    return request.app[SERVICE]


def _usage(result: SearchResult, job: Job) -> po.Usage:
    p, c = usage_counts(result, job)
    return po.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    req = await read_body(request, po.ChatCompletionRequest)
    req.check_supported()
    job = svc.job(request, req.model, req.to_prompt(), req.search_overrides(req.answer_max_tokens()),
                  w2s_options.trace(req.w2s))
    if req.stream:
        return await _stream(request, svc, job, req.include_usage, _ChatChunks(job))
    result = await svc.run(job, request)
    body = po.ChatCompletion(
        id=new_id("chatcmpl-"), created=now(), model=job.route,
        choices=[po.ChatChoice(index=i, message=po.AssistantMessage(content=a.text), finish_reason=a.finish_reason)
                 for i, a in enumerate(result.answers)],
        usage=_usage(result, job),
        w2s=trace_body(result) if job.trace else None,
    )
    return web.json_response(body.model_dump(mode="json"), headers=stats_headers(result, job))


async def completions(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    req = await read_body(request, po.CompletionRequest)
    req.check_supported()
    job = svc.job(request, req.model, req.to_prompt(), req.search_overrides(req.max_tokens),
                  w2s_options.trace(req.w2s))
    if req.stream:
        return await _stream(request, svc, job, req.include_usage, _TextChunks(job))
    result = await svc.run(job, request)
    body = po.Completion(
        id=new_id("cmpl-"), created=now(), model=job.route,
        choices=[po.CompletionChoice(index=i, text=a.text, finish_reason=a.finish_reason)
                 for i, a in enumerate(result.answers)],
        usage=_usage(result, job),
        w2s=trace_body(result) if job.trace else None,
    )
    return web.json_response(body.model_dump(mode="json"), headers=stats_headers(result, job))


async def list_models(request: web.Request) -> web.Response:
    svc = _service(request)
    return web.json_response(po.ModelList(data=[_card(svc, info) for info in svc.loaded().routes()])
                             .model_dump(mode="json"))


async def get_model(request: web.Request) -> web.Response:
    svc = _service(request)
    info = svc.loaded().route_info(request.match_info["model"])  # NotFound -> 404
    return web.json_response(_card(svc, info).model_dump(mode="json"))


def _card(svc: Service, info) -> po.ModelCard:
    # Route name, mode and description only: upstream keys and URLs stay private.
    return po.ModelCard(id=info.name, created=svc.started_at, w2s={
        "mode": info.mode,
        "description": info.config.description,
        "exact_continuation": info.exact,
        "default": info.name == svc.loaded().config.default_route,
    })


# --- streaming ----------------------------------------------------------------


class _ChatChunks:
    """chat.completion.chunk events for one request."""

    def __init__(self, job: Job):
        self.id, self.created, self.model = new_id("chatcmpl-"), now(), job.route

    def event(self, choices: list[po.ChunkChoice], usage: po.Usage | None = None, w2s=None) -> po.ChatCompletionChunk:
        return po.ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                      choices=choices, usage=usage, w2s=w2s)

    def role(self, i: int) -> po.ChatCompletionChunk:
        return self.event([po.ChunkChoice(index=i, delta=po.Delta(role="assistant", content=""))])

    def text(self, i: int, text: str) -> po.ChatCompletionChunk:
        return self.event([po.ChunkChoice(index=i, delta=po.Delta(content=text))])

    def finish(self, i: int, reason: str) -> po.ChatCompletionChunk:
        return self.event([po.ChunkChoice(index=i, delta=po.Delta(), finish_reason=reason)])


class _TextChunks:
    """text_completion events (legacy /v1/completions) for one request."""

    def __init__(self, job: Job):
        self.id, self.created, self.model = new_id("cmpl-"), now(), job.route

    def event(self, choices: list[po.CompletionChoice], usage: po.Usage | None = None, w2s=None) -> po.Completion:
        return po.Completion(id=self.id, created=self.created, model=self.model,
                             choices=choices, usage=usage, w2s=w2s)

    def role(self, i: int) -> None:
        return None  # completions have no role chunk

    def text(self, i: int, text: str) -> po.Completion:
        return self.event([po.CompletionChoice(index=i, text=text)])

    def finish(self, i: int, reason: str) -> po.Completion:
        return self.event([po.CompletionChoice(index=i, text="", finish_reason=reason)])


async def _stream(request: web.Request, svc: Service, job: Job, include_usage: bool,
                  chunks: _ChatChunks | _TextChunks) -> web.StreamResponse:
    """Stream the committed prefix as rounds finish, then the rest of each answer.

    With n > 1 every answer goes out at the end, per choice index: the answers
    only share their committed prefix, and fewer than n distinct ones may survive.
    """
    sse = EventStream(request, stats_headers(None, job))
    stream_live = job.params.n == 1
    sent = ""

    async def send(ev: Any) -> None:
        if ev is not None:
            await sse.send(ev)

    async def on_round(trace: RoundTrace, kept: list[str]) -> None:
        nonlocal sent
        if not stream_live:
            return
        if not sse.started:
            await send(chunks.role(0))
        prefix = committed_prefix(kept)
        if len(prefix) > len(sent) and prefix.startswith(sent):
            await send(chunks.text(0, prefix[len(sent):]))
            sent = prefix

    result = await svc.run_streamed(job, request, sse, on_round, lambda err: sse.send(openai_body(err)))
    if result is None:
        return sse.response

    for i, answer in enumerate(result.answers):
        if not (stream_live and sse.started):
            await send(chunks.role(i))
        rest = suffix_after(answer.text, sent) if stream_live else answer.text
        if rest:
            await send(chunks.text(i, rest))
        await send(chunks.finish(i, answer.finish_reason))
    trace = trace_body(result) if job.trace else None
    if include_usage:
        p, c = usage_counts(result, job)
        await send(chunks.event([], usage=po.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c),
                                w2s=trace))
    elif trace is not None:
        await send(chunks.event([], w2s=trace))
    await sse.send("[DONE]")
    return await sse.finish()


__all__ = ["chat_completions", "completions", "get_model", "list_models", "prompt_tokens"]
