"""Responses API bodies from a search result: the `response` object and its stream events,
built here once for the handler, its stream and the response store."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from w2s.proxy.api import protocol_responses as pr
from w2s.proxy.api import responses_tools as rt
from w2s.proxy.api.job import Job
from w2s.proxy.api.results import new_id, now, usage_counts
from w2s.proxy.api.trace import w2s_field
from w2s.proxy.core.errors import W2SError
from w2s.proxy.core.types import Answer, SearchResult

URL = "/v1/responses"


@dataclass
class Shell:
    """What a response says before any answer: its id, the request's settings echoed."""

    id: str
    created_at: int
    model: str
    request: pr.ResponsesRequest
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, req: pr.ResponsesRequest, job: Job) -> "Shell":
        return cls(new_id("resp_"), now(), job.route, req, req.notes())

    def response(self, status: pr.Status, **kw: Any) -> pr.Response:
        r = self.request
        return pr.Response(id=self.id, created_at=self.created_at, status=status, model=self.model,
                           instructions=r.instructions, max_output_tokens=r.max_output_tokens,
                           previous_response_id=r.previous_response_id, store=r.store is not False,
                           temperature=r.temperature, top_p=r.top_p, metadata=r.metadata or {},
                           user=(r.model_extra or {}).get("user"), **_tools_echo(r), **kw)


def _tools_echo(r: pr.ResponsesRequest) -> dict[str, Any]:
    """The tools, tool_choice and text format the answer was made with."""
    out: dict[str, Any] = {"tools": list(r.tools or []), "parallel_tool_calls": bool(r.parallel_tool_calls)}
    if r.tools:
        out["tool_choice"] = r.tool_choice if r.tool_choice is not None else "auto"
    if r.text and r.text.get("format"):
        out["text"] = {"format": r.text["format"]}
    return out


def cut_by_client(answer: Answer, req: pr.ResponsesRequest) -> bool:
    """Cut by a token limit the client set (max_output_tokens, or w2s.max_tokens): the response is incomplete.

    An answer cut by the route's own max_tokens is completed, and the notes say where it was cut: the
    Agents SDK and the Codex CLI take an incomplete response for a failure, and the client asked for no limit.
    """
    asked = req.max_output_tokens is not None or "max_tokens" in (req.w2s or {})
    return answer.finish_reason == "length" and asked


def message(answer: Answer, req: pr.ResponsesRequest, item_id: str | None = None) -> pr.OutputMessage:
    status = "incomplete" if cut_by_client(answer, req) else "completed"
    return pr.OutputMessage(id=item_id or new_id("msg_"), status=status, content=[pr.OutputText(text=answer.text)])


def function_calls(answer: Answer, ids: list[str] | None = None) -> list[rt.OutputFunctionCall]:
    """A function_call output item per tool call of the answer."""
    ids = ids or []
    return [rt.OutputFunctionCall(id=ids[j] if j < len(ids) else new_id("fc_"), call_id=c.id, name=c.name,
                                  arguments=c.arguments) for j, c in enumerate(answer.tool_calls)]


def items(answer: Answer, req: pr.ResponsesRequest, ids: list[str] | None = None) -> list:
    """An answer's output items: its message (unless it is only tool calls), then its function calls."""
    ids = ids or []
    has_text = bool(answer.text) or not answer.tool_calls
    out: list = [message(answer, req, ids[0] if ids else None)] if has_text else []
    return out + function_calls(answer, ids[len(out):])


def usage(result: SearchResult, job: Job) -> pr.Usage:
    p, c = usage_counts(result, job)
    return pr.Usage(input_tokens=p, output_tokens=c, total_tokens=p + c)


def response(shell: Shell, result: SearchResult, job: Job, item_ids: list[list[str]] | None = None) -> pr.Response:
    """The finished response: each answer's items (best first; one answer unless `w2s.n` asked for more):
    its message, then a function_call item per tool call. `item_ids`: each answer's item ids, as streamed.

    `incomplete` with reason max_output_tokens when the client's token limit cut the best answer.
    """
    ids, req = item_ids or [], shell.request
    output = [it for i, a in enumerate(result.answers) for it in items(a, req, ids[i] if i < len(ids) else None)]
    cut = cut_by_client(result.best, req)
    result.note(*shell.notes)
    if result.best.finish_reason == "length" and not cut:
        result.note(f"the answer reached the route's max_tokens ({job.params.max_tokens}) and was cut there; "
                    "max_output_tokens asks for more")
    return shell.response("incomplete" if cut else "completed", output=output,
                          output_text="".join(m.content[0].text for m in output  # as the SDKs compute it
                                              if isinstance(m, pr.OutputMessage)),
                          incomplete_details=pr.IncompleteDetails() if cut else None,
                          usage=usage(result, job), w2s=w2s_field(result, job))


def failed(shell: Shell, err: W2SError) -> pr.Response:
    return shell.response("failed", error=pr.ResponseError(code=err.code or err.type, message=err.message))


class Events:
    """The stream's events, each with the next `sequence_number`."""

    def __init__(self) -> None:
        self.seq = 0

    def event(self, kind: str, **body: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self.seq, **body}
        self.seq += 1
        return out

    def lifecycle(self, kind: str, resp: pr.Response) -> dict[str, Any]:
        """response.created / in_progress / completed / incomplete / failed."""
        return self.event(kind, response=resp.model_dump(mode="json"))

    def item_added(self, index: int, item_id: str) -> list[dict[str, Any]]:
        item = pr.OutputMessage(id=item_id, status="in_progress", content=[])
        part = pr.OutputText(text="")
        return [self.event("response.output_item.added", output_index=index, item=item.model_dump(mode="json")),
                self.event("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                           part=part.model_dump(mode="json"))]

    def delta(self, index: int, item_id: str, text: str) -> dict[str, Any]:
        return self.event("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                          delta=text, logprobs=[])

    def item_done(self, index: int, msg: pr.OutputMessage) -> list[dict[str, Any]]:
        part = msg.content[0]
        where = {"item_id": msg.id, "output_index": index, "content_index": 0}
        return [self.event("response.output_text.done", **where, text=part.text, logprobs=[]),
                self.event("response.content_part.done", **where, part=part.model_dump(mode="json")),
                self.event("response.output_item.done", output_index=index, item=msg.model_dump(mode="json"))]

    def call(self, index: int, fc: rt.OutputFunctionCall) -> list[dict[str, Any]]:
        """One function call, whole: added (no arguments yet), its arguments in one delta, done."""
        where = {"item_id": fc.id, "output_index": index}
        start = fc.model_copy(update={"arguments": "", "status": "in_progress"})
        return [self.event("response.output_item.added", output_index=index, item=start.model_dump(mode="json")),
                self.event("response.function_call_arguments.delta", **where, delta=fc.arguments),
                self.event("response.function_call_arguments.done", **where, name=fc.name, arguments=fc.arguments),
                self.event("response.output_item.done", output_index=index, item=fc.model_dump(mode="json"))]

    def error(self, err: W2SError) -> dict[str, Any]:
        return self.event("error", code=err.code or err.type, message=err.message, param=err.param)
