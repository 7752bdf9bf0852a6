"""The core's tools, tool history and output format in the Messages API's shapes (providers/anthropic.py).

History turns are OpenAI-style in the core: an assistant turn's `tool_calls` become `tool_use` blocks, each
`tool` turn a `tool_result` block in a user message (consecutive results share one). The Messages API
has no `response_format`: the format is said in the system prompt and every answer validated here.
"""
from __future__ import annotations

import json
from typing import Any

from w2s.proxy.core.tools import ToolCall, ToolSet, calls_of, format_prompt
from w2s.proxy.core.types import Prompt, content_text


def turn(m: dict) -> dict | None:
    """One core message as a Messages API message (None: nothing to send, e.g. an empty text turn)."""
    role, text = m.get("role"), content_text(m.get("content"))
    if role == "tool":
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": str(m.get("tool_call_id", "")),
                                             "content": text}]}
    blocks = [{"type": "text", "text": text}] if text else []
    if role == "assistant":
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
                   for c in calls_of(m)]
    if not blocks:
        return None  # empty text blocks are rejected
    return {"role": "assistant" if role == "assistant" else "user", "content": blocks}


def merge(messages: list[dict]) -> list[dict]:
    """Tool results that follow each other go in one user message, as the API wants them."""
    out: list[dict] = []
    for m in messages:
        results = all(b.get("type") == "tool_result" for b in m["content"])
        if out and results and out[-1]["role"] == "user" and all(
                b.get("type") == "tool_result" for b in out[-1]["content"]):
            out[-1]["content"].extend(m["content"])
        else:
            out.append(m)
    return out


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_fields(tools: ToolSet | None) -> dict[str, Any]:
    """`tools` and `tool_choice` for the request (nothing when no tools were offered)."""
    if tools is None or not tools.tools:
        return {}
    specs = [{"name": t.name, "input_schema": t.parameters, **({"description": t.description} if t.description
                                                               else {})} for t in tools.tools]
    choice: dict[str, Any] = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(
        tools.choice, {"type": "tool", "name": tools.name})
    if tools.parallel is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return {"tools": specs, "tool_choice": choice}


def system_with_format(system: str | None, prompt: Prompt) -> str | None:
    """The system prompt, with the output format said in it when there is one."""
    if prompt.output is None:
        return system
    said = format_prompt(prompt.output)
    return f"{system}\n\n{said}" if system else said


def calls_in(content: Any) -> tuple[ToolCall, ...]:
    """A response's tool_use blocks as core calls."""
    return tuple(ToolCall(b.id, b.name, json.dumps(b.input if b.input is not None else {}))
                 for b in content if getattr(b, "type", None) == "tool_use")
