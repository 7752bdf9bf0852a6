"""One committed-prefix streaming driver for both APIs.

After each round the text every kept beam agrees on can no longer change, so
it goes out at once; the rest of each answer goes out when the search ends.
Answers that may be tool calls or must be JSON (whole answers) go out only
once chosen and validated, tool calls after the text, each whole.
Each API supplies its own events (`Events`): the driver decides *when* and
*what text*, the API only how it looks on the wire.
"""
from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from w2s.proxy.api.job import Job
from w2s.proxy.api.results import prompt_tokens, usage_counts
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.search import committed_prefix
from w2s.proxy.core.types import Answer, RoundTrace, SearchResult
from w2s.proxy.server.service import Service, stats_headers
from w2s.proxy.server.sse import EventStream

log = logging.getLogger("w2s.server")


class Events(Protocol):
    """How one API writes a streamed answer."""

    best_only: bool  # only the best answer is returned (Anthropic); else all n, per choice index

    async def open(self, sse: EventStream, index: int, input_tokens: int) -> None:
        """Before answer `index`'s first text (OpenAI: a role chunk per choice; Anthropic: message_start)."""

    async def text(self, sse: EventStream, index: int, text: str) -> None: ...

    async def calls(self, sse: EventStream, index: int, answer: Answer) -> None:
        """Answer `index`'s tool calls, each whole, after its text (only answers that call tools)."""

    async def close(self, sse: EventStream, index: int, answer: Answer) -> None:
        """After answer `index`'s last text."""

    async def done(self, sse: EventStream, result: SearchResult) -> None:
        """After every answer: usage, the trace, the end marker."""

    async def error(self, sse: EventStream, err: W2SError) -> None: ...


def suffix_after(text: str, sent: str) -> str:
    """What is left of `text` to stream after `sent` went out.

    Kept beams only ever grow, so the best answer starts with the committed
    prefix already sent. The one exception is an upstream found mid-search to
    be unable to continue a prefix (its chunks become fresh whole answers):
    nothing sent can be taken back, so the rest is the part past the sent
    length, and the log says the stream diverged.
    """
    if not text.startswith(sent):
        log.warning("streamed prefix is not a prefix of the final answer (upstream lost exact continuation)")
    return text[len(sent):]


async def stream_search(svc: Service, request: web.Request, job: Job, events: Events) -> web.StreamResponse:
    """Stream the committed prefix as rounds finish, then the rest of each answer.

    With n > 1 answers (OpenAI) every answer goes out at the end, per choice
    index: the answers only share their committed prefix, and fewer than n
    distinct ones may survive.
    """
    sse = EventStream(request, stats_headers(None, job))
    # A tool call or a JSON answer streams only once chosen (and validated): never as a committed prefix.
    live = (events.best_only or job.params.n == 1) and not job.prompt.whole_answers
    sent = ""

    async def on_round(trace: RoundTrace, kept: list[str]) -> None:
        nonlocal sent
        if not live:
            return
        if not sse.started:
            await events.open(sse, 0, prompt_tokens(trace, job))
        prefix = committed_prefix(kept)
        if len(prefix) > len(sent) and prefix.startswith(sent):
            await events.text(sse, 0, prefix[len(sent):])
            sent = prefix

    result = await svc.run_streamed(job, request, sse, on_round, lambda err: events.error(sse, err))
    if result is None:
        return sse.response
    answers = result.answers[:1] if events.best_only else result.answers
    for i, answer in enumerate(answers):
        streamed = live and i == 0  # answer 0 was opened, and its prefix sent, round by round
        if not (streamed and sse.started):
            await events.open(sse, i, usage_counts(result, job)[0])
        rest = suffix_after(answer.text, sent) if streamed else answer.text
        if rest:
            await events.text(sse, i, rest)
        if answer.tool_calls:
            await events.calls(sse, i, answer)
        await events.close(sse, i, answer)
    await events.done(sse, result)
    return await sse.finish()
