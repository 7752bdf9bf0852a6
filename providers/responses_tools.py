"""The core's tools, tool history and output format in the Responses API's shapes
(providers/openai_responses.py, `mode: responses`)."""
from __future__ import annotations

from typing import Any

from w2s.proxy.core.tools import ToolCall, ToolSet, calls_of
from w2s.proxy.core.types import Prompt, content_text


def input_items(messages: list[dict]) -> list[dict]:
    """Core turns (system apart) as input items: messages, function_call and function_call_output items."""
    out: list[dict] = []
    for m in messages:
        if m.get("role") == "tool":
            out.append({"type": "function_call_output", "call_id": str(m.get("tool_call_id", "")),
                        "output": content_text(m.get("content"))})
            continue
        text = content_text(m.get("content"))
        if text or not m.get("tool_calls"):
            out.append({"role": m["role"], "content": text})
        out += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                for c in calls_of(m)]
    return out


def fields(prompt: Prompt) -> dict[str, Any]:
    """tools, tool_choice, parallel_tool_calls and text.format for the request."""
    out: dict[str, Any] = {}
    if prompt.tools is not None and prompt.tools.tools:
        out.update(_tools(prompt.tools))
    fmt = prompt.output
    if fmt is not None and fmt.kind == "json_schema":
        spec = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema}
        out["text"] = {"format": {**spec, **({"strict": fmt.strict} if fmt.strict is not None else {})}}
    elif fmt is not None:
        out["text"] = {"format": {"type": "json_object"}}
    return out


def _tools(tools: ToolSet) -> dict[str, Any]:
    specs = [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
              **({"strict": t.strict} if t.strict is not None else {})} for t in tools.tools]
    choice: Any = {"type": "function", "name": tools.name} if tools.choice == "function" else tools.choice
    out: dict[str, Any] = {"tools": specs, "tool_choice": choice}
    if tools.parallel is not None:
        out["parallel_tool_calls"] = tools.parallel
    return out


def calls_in(output: Any) -> tuple[ToolCall, ...]:
    """A response's function_call output items as core calls."""
    return tuple(ToolCall(str(getattr(it, "call_id", "") or getattr(it, "id", "")), it.name, it.arguments or "{}")
                 for it in output or () if getattr(it, "type", None) == "function_call")
