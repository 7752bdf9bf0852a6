"""OpenAI response bodies from a search result: built here once, for the
handlers, their streams and batch output files alike."""
from __future__ import annotations

from w2s.proxy.api import openai_tools as tw
from w2s.proxy.api import protocol_openai as po
from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id, now, usage_counts
from w2s.proxy.api.trace import w2s_field
from w2s.proxy.core.types import Answer, SearchResult

CHAT_URL = "/v1/chat/completions"
TEXT_URL = "/v1/completions"


def usage(result: SearchResult, job: Job) -> po.Usage:
    p, c = usage_counts(result, job)
    return po.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


def chat_completion(result: SearchResult, job: Job) -> po.ChatCompletion:
    return po.ChatCompletion(
        id=new_id("chatcmpl-"), created=now(), model=job.route,
        choices=[po.ChatChoice(index=i, message=assistant_message(a), finish_reason=finish_reason(a))
                 for i, a in enumerate(result.answers)],
        usage=usage(result, job), w2s=w2s_field(result, job),
    )


def assistant_message(a: Answer) -> po.AssistantMessage:
    """The answer's text, and its tool calls whole (content null when a call has no text beside it)."""
    content = a.text if a.text or not a.tool_calls else None
    return po.AssistantMessage(content=content, tool_calls=tw.calls_out(a.tool_calls))


def finish_reason(a: Answer) -> str:
    return "tool_calls" if a.tool_calls else a.finish_reason


def completion(result: SearchResult, job: Job) -> po.Completion:
    return po.Completion(
        id=new_id("cmpl-"), created=now(), model=job.route,
        choices=[po.CompletionChoice(index=i, text=a.text, finish_reason=a.finish_reason)
                 for i, a in enumerate(result.answers)],
        usage=usage(result, job), w2s=w2s_field(result, job),
    )


def body_for(url: str, result: SearchResult, job: Job) -> po.ChatCompletion | po.Completion:
    """The body `POST url` returns for `result`."""
    return chat_completion(result, job) if url == CHAT_URL else completion(result, job)


class ChatChunks:
    """chat.completion.chunk events for one streamed request."""

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

    def calls(self, i: int, answer: Answer) -> po.ChatCompletionChunk:
        """The answer's tool calls, each whole, in one chunk (sent once the answer is chosen)."""
        return self.event([po.ChunkChoice(index=i, delta=po.Delta(tool_calls=tw.calls_delta(answer.tool_calls)))])


class TextChunks:
    """text_completion events (legacy /v1/completions) for one streamed request."""

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
