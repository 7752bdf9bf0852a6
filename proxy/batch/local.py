"""Running batch items in this process, on an `Engine` loaded once.

Each item goes through the server's own steps: the body is validated by the
same wire models (proxy/api/protocol_openai.py), resolved into a Job the same
way (proxy/api/job.py), and its response body is built by the same builders
(proxy/api/openai_bodies.py), so a batch body is exactly what
`POST /v1/chat/completions` or `/v1/completions` would have returned.
"""
from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from w2s.proxy.api import openai_bodies as ob
from w2s.proxy.api import protocol_openai as po
from w2s.proxy.api.job import Job, resolve
from w2s.proxy.api.results import new_id
from w2s.proxy.api.wire_errors import as_w2s_error, openai_body
from w2s.proxy.batch.input import BatchItem
from w2s.proxy.batch.output import Outcome

if TYPE_CHECKING:
    from w2s.proxy.engine import Engine


class EngineRunner:
    """Items -> outcomes on an in-process engine. Never raises but CancelledError."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def execute(self, item: BatchItem) -> Outcome:
        request_id = new_id("req_")
        try:
            job = self.job_for(item)
            await self.engine.check_context(job.plan, job.prompt)  # 400 as the server's, before any work
            result = await self.engine.run(job.plan, job.prompt)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes that item's error line
            err = as_w2s_error(e)
            return Outcome(request_id, err.status, openai_body(err))
        return Outcome(
            request_id, 200, ob.body_for(item.url, result, job).model_dump(mode="json"),
            upstream_tokens=result.upstream_prompt_tokens + result.upstream_completion_tokens,
            scorer_tokens=result.scorer_tokens, upstream_calls=result.upstream_calls,
            prompt_tokens=result.upstream_prompt_tokens, cached_tokens=result.upstream_cached_tokens,
            completion_tokens=result.upstream_completion_tokens, cost_usd=result.cost_usd,
            answer_tokens=sum(a.completion_tokens for a in result.answers),
        )

    def job_for(self, item: BatchItem) -> Job:
        """Validate the body like the server does (400 / 404 before any work)."""
        raw = json.dumps(item.body)  # the server validates the raw JSON: same strictness here
        model = po.ChatCompletionRequest if item.url == ob.CHAT_URL else po.CompletionRequest
        # (stream: true never gets here: the batch runner refuses it first)
        return resolve(self.engine, model.model_validate_json(raw))
