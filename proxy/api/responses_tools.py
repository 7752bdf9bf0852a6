"""The Responses API's tools and `text.format` on the wire, and their core values (proxy/core/tools.py).

Requests: function tools (`{"type": "function", "name", "description", "parameters", "strict"}`),
`tool_choice` (none, auto, required, `{"type": "function", "name"}`), `parallel_tool_calls`,
`text.format` (text, json_object, json_schema with `name` and `schema`); `function_call` and
`function_call_output` input items, which become the core's assistant `tool_calls` and `tool` turns.
Tools of other types (the Codex CLI's `local_shell`, `web_search`, freeform `custom` tools) have no
function-call form an upstream takes: they are not offered to the model, and the notes say so.
Responses: a `function_call` output item per call; streamed, its added / arguments delta / arguments
done / done events.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.tools import FunctionTool, OutputFormat, ToolCall, ToolSet


def tool_set(tools: list[Any] | None, choice: Any, parallel: bool | None) -> tuple[ToolSet | None, list[str]]:
    """(the function tools as core values, notes on the tools not offered)."""
    funcs, notes = [], []
    for i, t in enumerate(tools or ()):
        if not isinstance(t, dict):
            raise InvalidRequest(f"tools[{i}]: must be an object", param=f"tools[{i}]")
        if t.get("type") != "function":
            notes.append(f"tools[{i}] ({t.get('type')!r}{', ' + t['name'] if isinstance(t.get('name'), str) else ''}):"
                         " not offered to the model (only function tools are)")
            continue
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise InvalidRequest(f"tools[{i}].name: required", param=f"tools[{i}].name")
        params = t.get("parameters") if isinstance(t.get("parameters"), dict) else {"type": "object", "properties": {}}
        funcs.append(FunctionTool(t["name"], t.get("description") or "", params, t.get("strict")))
    if not funcs:
        if choice not in (None, "auto", "none"):
            raise UnsupportedField("tool_choice: no function tools were offered", param="tool_choice")
        return None, notes
    kind, name = _choice(choice, {f.name for f in funcs})
    return ToolSet(tuple(funcs), kind, name, parallel), notes


def _choice(choice: Any, names: set[str]) -> tuple[str, str | None]:
    if choice is None:
        return "auto", None
    if choice in ("auto", "none", "required"):
        return choice, None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        if choice["name"] not in names:
            raise InvalidRequest(f"tool_choice: {choice['name']!r} is not among the tools offered",
                                 param="tool_choice")
        return "function", choice["name"]
    raise UnsupportedField("tool_choice: none, auto, required or {\"type\": \"function\", \"name\": ...}",
                           param="tool_choice")


def output_format(text: dict[str, Any] | None) -> OutputFormat | None:
    """`text.format` as a core value (None for text)."""
    fmt = (text or {}).get("format")
    if fmt is None or fmt == {"type": "text"}:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind == "json_schema" and isinstance(fmt.get("schema"), dict):
        return OutputFormat("json_schema", fmt["schema"], str(fmt.get("name") or "response"), fmt.get("strict"))
    raise UnsupportedField("text.format: text, json_object or json_schema (with a schema)", param="text.format")


def call_message(call_id: str, name: str, arguments: str) -> dict:
    """A function_call input item as the core's assistant turn."""
    return {"role": "assistant", "content": None, "tool_calls": [ToolCall(call_id, name, arguments).as_message_call()]}


def merge_calls(messages: list[dict]) -> list[dict]:
    """Calls that follow each other (parallel calls, or a message then its calls) make one assistant turn."""
    out: list[dict] = []
    for m in messages:
        prev = out[-1] if out else None
        if m.get("tool_calls") and prev is not None and prev.get("role") == "assistant":
            out[-1] = {**prev, "tool_calls": [*(prev.get("tool_calls") or []), *m["tool_calls"]],
                       "content": prev.get("content") or None}
        else:
            out.append(m)
    return out


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str  # fc_...
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed"] = "completed"
