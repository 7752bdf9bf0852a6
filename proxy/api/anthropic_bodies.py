"""Anthropic response bodies from a search result: the Message and its stream
events, built here once for the handler and its stream."""
from __future__ import annotations

from w2s.proxy.api import anthropic_tools as at
from w2s.proxy.api import protocol_anthropic as pa
from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id, usage_counts
from w2s.proxy.api.trace import w2s_field
from w2s.proxy.core.types import Answer, SearchResult


def stop_reason(answer: Answer) -> tuple[pa.StopReason, str | None]:
    """Answer.finish_reason -> Anthropic's (stop_reason, stop_sequence).

    A stop string is reported only when the upstream said which one matched;
    an upstream that cannot tell (OpenAI's API-side stops) reads as end_turn,
    never a guess.
    """
    if answer.tool_calls:
        return "tool_use", None
    if answer.finish_reason == "length":
        return "max_tokens", None
    if answer.stop_sequence is not None:
        return "stop_sequence", answer.stop_sequence
    return "end_turn", None


def message(result: SearchResult, job: Job, msg_id: str | None = None) -> pa.Message:
    best = result.best
    reason, seq = stop_reason(best)
    p, _ = usage_counts(result, job)
    return pa.Message(
        id=msg_id or new_id("msg_"), model=job.route, content=content(best),
        stop_reason=reason, stop_sequence=seq,
        # One message comes back, so only the best answer's tokens count.
        usage=pa.Usage(input_tokens=p, output_tokens=best.completion_tokens),
        w2s=w2s_field(result, job),
    )


def content(answer: Answer) -> list[pa.TextBlock | at.ToolUseBlock]:
    """The answer's text block (left out when empty beside tool calls), then a tool_use block per call."""
    text = [pa.TextBlock(text=answer.text)] if answer.text or not answer.tool_calls else []
    return [*text, *(at.tool_use(c) for c in answer.tool_calls)]


def message_start(job: Job, msg_id: str, input_tokens: int) -> pa.MessageStart:
    start = pa.Message(id=msg_id, model=job.route, content=[],
                       usage=pa.Usage(input_tokens=input_tokens, output_tokens=0))
    return pa.MessageStart(message=start)


def message_delta(result: SearchResult, job: Job) -> pa.MessageDelta:
    best = result.best
    reason, seq = stop_reason(best)
    return pa.MessageDelta(delta=pa.StopDelta(stop_reason=reason, stop_sequence=seq),
                           usage=pa.DeltaUsage(output_tokens=best.completion_tokens),
                           w2s=w2s_field(result, job))
