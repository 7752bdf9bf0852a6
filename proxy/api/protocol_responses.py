"""OpenAI Responses API wire models: POST /v1/responses, GET /v1/responses/{id}, its stream events.

The same policy as the other two APIs: strict types, a 400 naming any field the
proxy cannot honour when honouring it would change the answer (a JSON schema
output format, a required tool call, images), and fields that change nothing
here accepted. Unlike the others, what was accepted and left unused is said in
the response's notes (`w2s.notes`): today's clients (the Codex CLI, the Agents
SDK) send tools, reasoning settings and cache keys on every request.

`input` is a string or a list of items: messages (roles user, system,
developer, assistant; content parts input_text / output_text) and
function_call / function_call_output items, which reach the upstream as its
own tool turns. Function tools, `tool_choice` and `text.format` are taken
(proxy/api/responses_tools.py): whole answers, searched (docs/tools.md). The
Responses API has no `n`, `seed` or `stop`: the `w2s` options carry them.
"""
from __future__ import annotations

import json
from dataclasses import replace
from functools import cached_property
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from w2s.proxy.api import responses_tools as rt
from w2s.proxy.api import w2s_options
from w2s.proxy.api.wire_errors import validation_error
from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.types import Prompt

# --- request side -------------------------------------------------------------

# No effect on the answer and nothing to say: accepted silently.
IGNORED = frozenset({"metadata", "user", "service_tier", "safety_identifier", "background", "stream_options",
                     "client_metadata"})  # the Codex CLI's session and turn ids

# Accepted, left unused, and named in the response's notes (value -> whether it is harmless).
NOTED: dict[str, Callable[[Any], bool]] = {
    "reasoning": lambda v: v is None or isinstance(v, dict),
    "include": lambda v: v is None or isinstance(v, list),
    "prompt_cache_key": lambda v: v is None or isinstance(v, str),
    "prompt_cache_retention": lambda v: v is None or isinstance(v, str),
    "truncation": lambda v: v in (None, "disabled", "auto"),
    "max_tool_calls": lambda v: v is None or isinstance(v, int),
    "top_logprobs": lambda v: v in (None, 0),
}
_WHY = {
    "top_logprobs": "no log-probs here",
}

_TEXT_PARTS = {"input_text", "output_text", "text"}


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")  # ids and statuses of echoed output items

    id: str | None = None
    status: str | None = None


class MessageItem(_Item):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[dict[str, Any]]


class FunctionCallItem(_Item):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(_Item):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[dict[str, Any]]


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem
ITEMS: dict[str, type[InputItem]] = {"message": MessageItem, "function_call": FunctionCallItem,
                                     "function_call_output": FunctionCallOutputItem}


def parse_item(raw: dict[str, Any], where: str) -> InputItem:
    """One input item by its `type` (a message when absent); a 400 naming the item's field when bad."""
    kind = raw.get("type", "message")
    model = ITEMS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnsupportedField(f"{where}.type: {kind!r} items are not supported (known: {', '.join(ITEMS)})",
                               param=f"{where}.type")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = validation_error(e)
        param = f"{where}.{err.param}" if err.param else where
        raise type(err)(f"{where}.{err.message}" if err.param else f"{where}: {err.message}", param=param) from None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None  # None: the config's default_route
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool | None = False
    store: bool | None = True  # OpenAI's default: kept for GET and previous_response_id
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None  # echoed on the response
    tools: list[Any] | None = None  # function tools are offered (responses_tools.py); others noted
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None  # format: text, json_object, json_schema; verbosity noted
    w2s: dict[str, Any] | None = None  # per-request search overrides (n, seed, stop...) and "trace"
    # The stored conversation previous_response_id points at (set by the server before to_prompt).
    _history: list[dict] = PrivateAttr(default_factory=list)

    @cached_property
    def items(self) -> list[InputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return [parse_item(raw, f"input[{i}]") for i, raw in enumerate(self.input)]

    def check_supported(self) -> None:
        w2s_options.check_extra_fields({k: v for k, v in (self.model_extra or {}).items() if k not in NOTED},
                                       IGNORED, {})
        for key, ok in NOTED.items():
            if key in (self.model_extra or {}) and not ok(self.model_extra[key]):
                raise UnsupportedField(f"{key}: not supported by this proxy at this value (weak-to-strong "
                                       "search returns plain text)", param=key)
        self.tool_set(), self.output_format()  # 400s naming the field
        items = self.items
        if not items:
            raise InvalidRequest("input: at least one item", param="input")
        for i, item in enumerate(items):
            if isinstance(item, MessageItem) and isinstance(item.content, list):
                _check_parts(item.content, f"input[{i}].content")
        if _role(items[-1]) == "assistant":
            last = f"input[{len(items) - 1}]"
            raise UnsupportedField(f"{last}: the input ends with an assistant turn; the Responses API writes a "
                                   "new turn after it, which this proxy does not do (chat completions continue "
                                   "a trailing assistant message)", param=last)

    def notes(self) -> list[str]:
        """What was sent, accepted and left unused: said in the response (`w2s.notes`)."""
        extra = self.model_extra or {}
        out = [f"{k}: accepted and ignored ({_WHY.get(k, 'no effect here')})"
               for k in NOTED if k in extra and extra[k] not in (None, [], {})]
        if (self.text or {}).get("verbosity") is not None:
            out.append("text.verbosity: accepted and ignored (no effect here)")
        return out + self.tool_set()[1]

    def tool_set(self):
        return rt.tool_set(self.tools, self.tool_choice, self.parallel_tool_calls)

    def output_format(self):
        return rt.output_format(self.text)

    def conversation(self) -> list[dict]:
        """The turns this request adds (instructions apart), as core messages (tool turns included)."""
        return rt.merge_calls([_as_message(item) for item in self.items])

    def set_history(self, messages: list[dict]) -> None:
        self._history = list(messages)

    def to_prompt(self) -> Prompt:
        msgs = [{"role": "system", "content": self.instructions}] if self.instructions else []
        prompt = Prompt(messages=tuple(msgs + self._history + self.conversation()))
        return replace(prompt, tools=self.tool_set()[0], output=self.output_format())

    def search_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("max_tokens", self.max_output_tokens), ("temperature", self.temperature),
                           ("top_p", self.top_p)):
            if value is not None:
                out[key] = value
        out.update(w2s_options.overrides(self.w2s))
        return out


def _role(item: InputItem) -> str:
    if isinstance(item, MessageItem):
        return item.role
    return "assistant" if isinstance(item, FunctionCallItem) else "user"


def _check_parts(parts: list[dict[str, Any]], where: str) -> None:
    for j, part in enumerate(parts):
        kind = part.get("type")
        if kind not in _TEXT_PARTS:
            raise UnsupportedField(f"{where}[{j}]: only text content parts are supported (got {kind!r})",
                                   param=f"{where}[{j}].type")
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{where}[{j}].text: must be a string", param=f"{where}[{j}].text")


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _as_message(item: InputItem) -> dict:
    if isinstance(item, MessageItem):
        return {"role": item.role, "content": _text(item.content)}
    if isinstance(item, FunctionCallItem):
        return rt.call_message(item.call_id, item.name, item.arguments)
    output = item.output if isinstance(item.output, str) else _text(item.output) or json.dumps(item.output)
    return {"role": "tool", "tool_call_id": item.call_id, "content": output}


# --- response side ------------------------------------------------------------

Status = Literal["in_progress", "completed", "incomplete", "failed"]


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str  # msg_...
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"] = "max_output_tokens"


class ResponseError(BaseModel):
    code: str
    message: str


class Response(BaseModel):
    id: str  # resp_...
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str  # the route name
    output: list[OutputMessage | rt.OutputFunctionCall] = Field(default_factory=list)
    output_text: str = ""  # the SDKs' convenience property, sent for clients without one
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = Field(default_factory=lambda: {"effort": None, "summary": None})
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "none"
    tools: list[Any] = Field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: Usage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    w2s: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)  # the trace, the notes


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True
