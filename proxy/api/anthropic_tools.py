"""The Messages API's tools on the wire, and their core values (proxy/core/tools.py).

Requests: `tools` (custom tools: name, description, input_schema), `tool_choice`
(auto, any, tool, none), `output_format` (json_schema); history blocks
`tool_use` (assistant) and `tool_result` (user), which become the core's
OpenAI-style turns: an assistant turn with `tool_calls`, then one `tool` turn
per result. Responses: `tool_use` blocks, stop_reason `tool_use`.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.tools import FunctionTool, OutputFormat, ToolCall, ToolSet

# --- request side -------------------------------------------------------------


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="ignore")  # cache_control, strict...

    type: str | None = None  # "custom" or absent; server tools (bash_..., web_search_...) are refused
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None


def tool_set(tools: list[dict[str, Any]] | None, choice: dict[str, Any] | None) -> ToolSet | None:
    if not tools:
        if choice is not None and choice.get("type") not in ("auto", "none"):
            raise InvalidRequest("tool_choice: no tools were offered", param="tool_choice")
        return None
    funcs = tuple(_function(raw, i) for i, raw in enumerate(tools))
    kind, name = _choice(choice, {f.name for f in funcs})
    parallel = None if choice is None or "disable_parallel_tool_use" not in choice else \
        not choice["disable_parallel_tool_use"]
    return ToolSet(funcs, kind, name, parallel)


def _function(raw: Any, i: int) -> FunctionTool:
    try:
        tool = ToolDef.model_validate(raw)
    except ValidationError as e:
        raise InvalidRequest(f"tools[{i}]: {e.errors()[0]['msg']}", param=f"tools[{i}]") from None
    if tool.type not in (None, "custom"):
        raise UnsupportedField(f"tools[{i}].type: only custom (client) tools are supported (got {tool.type!r})",
                               param=f"tools[{i}].type")
    schema = tool.input_schema if tool.input_schema is not None else {"type": "object", "properties": {}}
    return FunctionTool(tool.name, tool.description or "", schema)


def _choice(choice: dict[str, Any] | None, names: set[str]) -> tuple[str, str | None]:
    kind = (choice or {}).get("type", "auto")
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
    if mapped is not None:
        return mapped, None
    name = (choice or {}).get("name")
    if kind != "tool" or not isinstance(name, str):
        raise InvalidRequest("tool_choice.type: auto, any, tool (with a name) or none", param="tool_choice.type")
    if name not in names:
        raise InvalidRequest(f"tool_choice.name: {name!r} is not among the tools offered", param="tool_choice.name")
    return "function", name


def output_format(raw: dict[str, Any] | None) -> OutputFormat | None:
    """`output_format: {"type": "json_schema", "schema": {...}}` (Anthropic's structured outputs)."""
    if not raw:
        return None
    if raw.get("type") != "json_schema" or not isinstance(raw.get("schema"), dict):
        raise UnsupportedField("output_format: only {\"type\": \"json_schema\", \"schema\": {...}}",
                               param="output_format")
    return OutputFormat("json_schema", raw["schema"])


def check_tool_block(b: dict[str, Any], role: str, where: str) -> None:
    """A `tool_use` (assistant) or `tool_result` (user) history block, checked."""
    kind = b.get("type")
    want = "tool_use" if role == "assistant" else "tool_result"
    if kind != want:
        raise UnsupportedField(f"{where}.type: a {kind} block belongs in a"
                               f" {'user' if kind == 'tool_result' else 'assistant'} message", param=f"{where}.type")
    key = "id" if kind == "tool_use" else "tool_use_id"
    if not isinstance(b.get(key), str):
        raise InvalidRequest(f"{where}.{key}: must be a string", param=f"{where}.{key}")
    if kind == "tool_use" and not isinstance(b.get("name"), str):
        raise InvalidRequest(f"{where}.name: must be a string", param=f"{where}.name")


def turns_of(role: str, blocks: list[dict[str, Any]]) -> list[dict]:
    """One message's blocks as core turns: text (+ tool_calls) for the assistant; tool results first, then
    the user's text."""
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    if role == "assistant":
        calls = [ToolCall(b["id"], b["name"], json.dumps(b.get("input") or {})).as_message_call()
                 for b in blocks if b.get("type") == "tool_use"]
        return [{"role": "assistant", "content": text or None, "tool_calls": calls} if calls
                else {"role": "assistant", "content": text}]
    out = [{"role": "tool", "tool_call_id": b["tool_use_id"], "content": _result_text(b)}
           for b in blocks if b.get("type") == "tool_result"]
    return out + ([{"role": "user", "content": text}] if text or not out else [])


def _result_text(b: dict[str, Any]) -> str:
    content = b.get("content")
    text = content if isinstance(content, str) else "".join(
        p.get("text", "") for p in content or () if isinstance(p, dict))
    return f"[error] {text}" if b.get("is_error") else text


# --- response side ------------------------------------------------------------


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


def tool_use(call: ToolCall) -> ToolUseBlock:
    return ToolUseBlock(id=call.id if call.id.startswith("toolu_") else f"toolu_{call.id}", name=call.name,
                        input=_input(call.arguments))


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_raw": arguments}  # the model wrote arguments that are not JSON: kept, not dropped
    return value if isinstance(value, dict) else {"value": value}
