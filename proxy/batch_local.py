"""Running batch items in this process, on an `Engine` loaded once.

Each item goes through the server's own steps: the body is validated by the
same wire models (`proxy.protocol_openai`), the route and search params are
resolved the same way, and the response body is built from the same models
and helpers (`usage_counts`, `trace_body`), so a batch body is exactly what
`POST /v1/chat/completions` or `/v1/completions` would have returned.

`completion_body` is an adapter: the server builds its bodies inline in
`proxy.handlers_openai`, which needs an aiohttp request; this mirrors those
few lines. If the handlers ever factor a builder out, call it here instead.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from proxy import protocol_openai as po
from proxy import w2s_options
from proxy.batch_input import CHAT_URL, BatchItem
from proxy.batch_output import Outcome
from proxy.serving import Job, new_id, now, trace_body, usage_counts
from proxy.types import SearchResult
from proxy.wire_errors import as_w2s_error, openai_body


class EngineRunner:
    """Items -> outcomes on an in-process engine. Never raises but CancelledError."""

    def __init__(self, engine):
        self.engine = engine

    async def execute(self, item: BatchItem) -> Outcome:
        request_id = new_id("req_")
        try:
            job = self.job_for(item)
            result = await self.engine.run(job.route, job.prompt, params=job.params)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes that item's error line
            err = as_w2s_error(e)
            return Outcome(request_id, err.status, openai_body(err))
        return Outcome(
            request_id, 200, completion_body(item.url, result, job),
            upstream_tokens=result.upstream_prompt_tokens + result.upstream_completion_tokens,
            scorer_tokens=result.scorer_tokens,
        )

    def job_for(self, item: BatchItem) -> Job:
        """Validate the body like the server does (400 / 404 before any work)."""
        raw = json.dumps(item.body)  # the server validates the raw JSON: same strictness here
        req: po.ChatCompletionRequest | po.CompletionRequest
        if item.url == CHAT_URL:
            req = po.ChatCompletionRequest.model_validate_json(raw)
            max_tokens = req.answer_max_tokens()
        else:
            req = po.CompletionRequest.model_validate_json(raw)
            max_tokens = req.max_tokens
        req.check_supported()  # (stream: true never gets here: the batch runner refuses it first)
        info = self.engine.route_info(req.model)  # NotFound -> a 404 line
        params = self.engine.params_for(info.name, req.search_overrides(max_tokens))
        return Job(route=info.name, mode=info.mode, prompt=req.to_prompt(), params=params,
                   trace=w2s_options.trace(req.w2s))


def completion_body(url: str, result: SearchResult, job: Job) -> dict[str, Any]:
    """The chat.completion / text_completion object the server returns for `result`."""
    p, c = usage_counts(result, job)
    usage = po.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)
    trace = trace_body(result) if job.trace else None
    body: po.ChatCompletion | po.Completion
    if url == CHAT_URL:
        body = po.ChatCompletion(
            id=new_id("chatcmpl-"), created=now(), model=job.route,
            choices=[po.ChatChoice(index=i, message=po.AssistantMessage(content=a.text),
                                   finish_reason=a.finish_reason)
                     for i, a in enumerate(result.answers)],
            usage=usage, w2s=trace,
        )
    else:
        body = po.Completion(
            id=new_id("cmpl-"), created=now(), model=job.route,
            choices=[po.CompletionChoice(index=i, text=a.text, finish_reason=a.finish_reason)
                     for i, a in enumerate(result.answers)],
            usage=usage, w2s=trace,
        )
    return body.model_dump(mode="json")
