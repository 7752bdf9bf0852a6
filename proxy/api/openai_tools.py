"""Chat Completions' tools and `response_format` on the wire, and their core values (proxy/core/tools.py).

Requests: `tools` (function tools), `tool_choice` (none, auto, required, a named
function), `parallel_tool_calls`, `response_format` (text, json_object,
json_schema); history turns with `tool_calls` and `role: tool` results.
Responses: `message.tool_calls` (finish_reason `tool_calls`) and, streamed, the
calls in `delta.tool_calls`, each whole in one chunk.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.tools import FunctionTool, OutputFormat, ToolCall, ToolSet

# --- request side -------------------------------------------------------------


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    function: FunctionDef | None = None


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str | dict[str, Any] = ""


class ToolCallIn(BaseModel):
    """A call in an assistant history turn."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = "response"
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # vLLM and others take json_object + schema


def tool_set(tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None) -> ToolSet | None:
    """The request's tools as core values; a 400 naming the field for what is not a function tool."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice: no tools were offered", param="tool_choice")
        return None
    funcs = tuple(_function(raw, i) for i, raw in enumerate(tools))
    kind, name = _choice(choice, {f.name for f in funcs})
    return ToolSet(funcs, kind, name, parallel)


def _function(raw: Any, i: int) -> FunctionTool:
    try:
        tool = ToolDef.model_validate(raw)
    except ValidationError as e:
        raise InvalidRequest(f"tools[{i}]: {e.errors()[0]['msg']}", param=f"tools[{i}]") from None
    if tool.type != "function" or tool.function is None:
        raise UnsupportedField(f"tools[{i}].type: only function tools are supported (got {tool.type!r})",
                               param=f"tools[{i}].type")
    f = tool.function
    params = f.parameters if f.parameters is not None else {"type": "object", "properties": {}}
    return FunctionTool(f.name, f.description or "", params, f.strict)


def _choice(choice: Any, names: set[str]) -> tuple[str, str | None]:
    if choice is None:
        return "auto", None
    if choice in ("none", "auto", "required"):
        return choice, None
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest("tool_choice: none, auto, required or {\"type\": \"function\", \"function\": "
                             "{\"name\": ...}}", param="tool_choice")
    if name not in names:
        raise InvalidRequest(f"tool_choice: {name!r} is not among the tools offered", param="tool_choice")
    return "function", name


def output_format(raw: dict[str, Any] | None) -> OutputFormat | None:
    """`response_format` as a core value (None for text)."""
    if raw is None:
        return None
    try:
        rf = ResponseFormat.model_validate(raw)
    except ValidationError as e:
        raise InvalidRequest(f"response_format: {e.errors()[0]['msg']}", param="response_format") from None
    if rf.type == "text":
        return None
    if rf.type == "json_object":
        return OutputFormat("json_object", rf.schema_)
    if rf.json_schema is None or rf.json_schema.schema_ is None:
        raise InvalidRequest("response_format.json_schema.schema: required for type json_schema",
                             param="response_format.json_schema")
    js = rf.json_schema
    return OutputFormat("json_schema", js.schema_, js.name, js.strict)


def history_calls(raw: list[Any], where: str) -> list[dict]:
    """An assistant turn's `tool_calls`, checked, in the core's message form."""
    out = []
    for j, c in enumerate(raw):
        try:
            call = ToolCallIn.model_validate(c)
        except ValidationError as e:
            raise InvalidRequest(f"{where}[{j}]: {e.errors()[0]['msg']}", param=f"{where}[{j}]") from None
        args = call.function.arguments
        out.append(ToolCall(call.id, call.function.name, args if isinstance(args, str) else _json(args))
                   .as_message_call())
    return out


def _json(v: Any) -> str:
    import json

    return json.dumps(v)


# --- response side ------------------------------------------------------------


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ToolCallDelta(ToolCallOut):
    index: int


def calls_out(calls: tuple[ToolCall, ...]) -> list[ToolCallOut] | None:
    return [ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
            for c in calls] or None


def calls_delta(calls: tuple[ToolCall, ...]) -> list[ToolCallDelta]:
    return [ToolCallDelta(index=j, id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
            for j, c in enumerate(calls)]
