"""Anthropic endpoint: POST /v1/messages (plain and streaming)."""
from __future__ import annotations

from aiohttp import web

from proxy import protocol_anthropic as pa
from proxy import w2s_options
from proxy.search import committed_prefix
from proxy.serving import (
    SERVICE,
    Job,
    Service,
    new_id,
    prompt_tokens,
    read_body,
    stats_headers,
    suffix_after,
    trace_body,
    usage_counts,
)
from proxy.sse import EventStream
from proxy.types import Answer, RoundTrace
from proxy.wire_errors import anthropic_body


def stop_reason(answer: Answer) -> tuple[pa.StopReason, str | None]:
    """Answer.finish_reason -> Anthropic's (stop_reason, stop_sequence).

    A stop string is reported only when the upstream said which one matched;
    an upstream that cannot tell (OpenAI's API-side stops) reads as end_turn,
    never a guess.
    """
    if answer.finish_reason == "length":
        return "max_tokens", None
    if answer.stop_sequence is not None:
        return "stop_sequence", answer.stop_sequence
    return "end_turn", None


async def messages(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    req = await read_body(request, pa.MessagesRequest)
    req.check_supported()
    job = svc.job(request, req.model, req.to_prompt(), req.search_overrides(), w2s_options.trace(req.w2s))
    msg_id = new_id("msg_")
    if req.stream:
        return await _stream(request, svc, job, msg_id)
    result = await svc.run(job, request)
    best = result.best
    reason, seq = stop_reason(best)
    p, _ = usage_counts(result, job)
    body = pa.Message(
        id=msg_id, model=job.route, content=[pa.TextBlock(text=best.text)],
        stop_reason=reason, stop_sequence=seq,
        # One message comes back, so only the best answer's tokens count.
        usage=pa.Usage(input_tokens=p, output_tokens=best.completion_tokens),
        w2s=trace_body(result) if job.trace else None,
    )
    return web.json_response(body.model_dump(mode="json"), headers=stats_headers(result, job))


async def _stream(request: web.Request, svc: Service, job: Job, msg_id: str) -> web.StreamResponse:
    """message_start once round one is in (input tokens known), the committed
    prefix as text_delta events after each round, the rest at the end."""
    sse = EventStream(request, stats_headers(None, job))
    sent = ""

    async def begin(input_tokens: int) -> None:
        start = pa.Message(id=msg_id, model=job.route, content=[],
                           usage=pa.Usage(input_tokens=input_tokens, output_tokens=0))
        await sse.send(pa.MessageStart(message=start), event="message_start")
        await sse.send(pa.ContentBlockStart(content_block=pa.TextBlock(text="")), event="content_block_start")
        await sse.send(pa.Ping(), event="ping")

    async def delta(text: str) -> None:
        await sse.send(pa.ContentBlockDelta(delta=pa.TextDelta(text=text)), event="content_block_delta")

    async def on_round(trace: RoundTrace, kept: list[str]) -> None:
        nonlocal sent
        if not sse.started:
            await begin(prompt_tokens(trace, job))
        prefix = committed_prefix(kept)
        if len(prefix) > len(sent) and prefix.startswith(sent):
            await delta(prefix[len(sent):])
            sent = prefix

    result = await svc.run_streamed(job, request, sse, on_round,
                                    lambda err: sse.send(anthropic_body(err), event="error"))
    if result is None:
        return sse.response

    best = result.best
    if not sse.started:
        await begin(usage_counts(result, job)[0])
    rest = suffix_after(best.text, sent)
    if rest:
        await delta(rest)
    await sse.send(pa.ContentBlockStop(), event="content_block_stop")
    reason, seq = stop_reason(best)
    await sse.send(pa.MessageDelta(delta=pa.StopDelta(stop_reason=reason, stop_sequence=seq),
                                   usage=pa.DeltaUsage(output_tokens=best.completion_tokens),
                                   w2s=trace_body(result) if job.trace else None), event="message_delta")
    await sse.send(pa.MessageStop(), event="message_stop")
    return await sse.finish()
