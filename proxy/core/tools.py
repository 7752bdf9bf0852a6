"""Tools and structured output as plain data: what a request offers, what a candidate calls.

Pure (no SDK types): every wire protocol (proxy/api/protocol_*.py) converts its
own shapes to these, every provider converts these to its upstream's. History
turns stay OpenAI-style message dicts (`Prompt.messages`): an assistant turn may
carry `tool_calls` ({"id", "type": "function", "function": {"name",
"arguments"}}), a `tool` turn carries `tool_call_id` and the result as content.

A tool call cannot be split across chunks (servers parse calls from what one
request generated), so a request with tools (unless `tool_choice: none`) or an
output format draws whole answers, and the guide chooses among them. A guide
scores a call as text (`answer_text`): the Hermes form most small chat models
were trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

ToolChoice = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass(frozen=True)
class ToolSet:
    """The tools a request offers and how it lets the model use them (`function`: must call `name`)."""

    tools: tuple[FunctionTool, ...]
    choice: ToolChoice = "auto"
    name: str | None = None  # the forced function when choice == "function"
    parallel: bool | None = None  # parallel_tool_calls as the client sent it

    @property
    def callable(self) -> bool:
        """Whether an answer may be a tool call (what makes the search draw whole answers)."""
        return bool(self.tools) and self.choice != "none"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    def as_message_call(self) -> dict:
        """The OpenAI-style `tool_calls` entry of an assistant history turn."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class OutputFormat:
    """`response_format` / `text.format`: JSON, and with `schema`, JSON valid against it."""

    kind: Literal["json_object", "json_schema"]
    schema: dict | None = None
    name: str = "response"
    strict: bool | None = None


def whole_reason(tools: ToolSet | None, output: OutputFormat | None, mode: str) -> str:
    """Why a search draws whole answers, and what it runs as (said in the notes and the trace)."""
    what = []
    if tools is not None and tools.callable:
        what.append(f"tools offered (tool_choice {tools.name or tools.choice}): a tool call cannot be split "
                    "across chunks")
    if output is not None:
        what.append(f"output format {output.kind}: only a whole answer can be validated")
    how = "plain draws, no search" if mode == "passthrough" else \
        "one plain draw" if mode == "sample" else f"guided Best-of-N over whole answers ({mode})"
    return f"{'; '.join(what)}: {how}"


def calls_of(message: dict) -> list[ToolCall]:
    """The tool calls of an OpenAI-style assistant message (history)."""
    out = []
    for c in message.get("tool_calls") or ():
        fn = c.get("function") or {}
        out.append(ToolCall(str(c.get("id", "")), str(fn.get("name", "")), _arguments_text(fn.get("arguments"))))
    return out


def _arguments_text(args) -> str:
    return args if isinstance(args, str) else json.dumps(args if args is not None else {})


def render_calls(calls: tuple[ToolCall, ...] | list[ToolCall]) -> str:
    """Tool calls as text in the Hermes form (`<tool_call>{"name", "arguments"}</tool_call>`)."""
    parts = []
    for c in calls:
        try:
            args = json.loads(c.arguments) if c.arguments.strip() else {}
        except ValueError:
            args = c.arguments
        parts.append("<tool_call>\n" + json.dumps({"name": c.name, "arguments": args}, ensure_ascii=False)
                     + "\n</tool_call>")
    return "\n".join(parts)


def answer_text(text: str, calls: tuple[ToolCall, ...]) -> str:
    """What a guide scores: the answer's text, then its calls rendered as text."""
    if not calls:
        return text
    rendered = render_calls(calls)
    return f"{text}\n{rendered}" if text else rendered


def text_turns(messages: list[dict], tool_role: bool) -> list[dict]:
    """Messages with tool calls and results as plain text, for a template: calls appended to the
    assistant's text, results as `tool` turns when the template has that role, else as user turns."""
    out = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        text = content if isinstance(content, str) else _parts_text(content)
        if role == "assistant" and m.get("tool_calls"):
            out.append({"role": "assistant", "content": answer_text(text, tuple(calls_of(m)))})
        elif role in ("tool", "function"):
            out.append({"role": "tool" if tool_role else "user",
                        "content": text if tool_role else f"<tool_response>\n{text}\n</tool_response>"})
        else:
            out.append({**{k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id", "name")},
                        "content": text})
    return out


def _parts_text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def tools_prompt(tools: ToolSet) -> str:
    """The tools described in a system prompt (Hermes), for an upstream whose server will not take `tools`."""
    specs = "\n".join(json.dumps({"type": "function", "function": {"name": t.name, "description": t.description,
                                                                   "parameters": t.parameters}})
                      for t in tools.tools)
    must = {"required": "You must call one of these functions.",
            "function": f"You must call the function {tools.name}."}.get(tools.choice, "")
    return ("You may call one or more functions to assist with the user query. " + must +
            "\nFunction signatures, within <tools></tools> XML tags:\n<tools>\n" + specs + "\n</tools>\n"
            "For each call, return a JSON object with the function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>")


def parse_text_calls(text: str, tools: ToolSet, new_id) -> tuple[str, tuple[ToolCall, ...]]:
    """Hermes-form calls a server left in the text (it returned no parsed `tool_calls`):
    (the text before them, the calls). Only calls to offered functions count."""
    names = {t.name for t in tools.tools}
    calls, pos = [], 0
    while (start := text.find("<tool_call>", pos)) >= 0:
        end = text.find("</tool_call>", start)
        body = text[start + len("<tool_call>"):end if end >= 0 else len(text)]
        pos = len(text) if end < 0 else end + len("</tool_call>")
        try:
            obj = json.loads(body.strip())
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("name") in names:
            calls.append(ToolCall(new_id(), obj["name"], _arguments_text(obj.get("arguments", {}))))
    return (text[:text.find("<tool_call>")].rstrip(), tuple(calls)) if calls else (text, ())


def format_prompt(fmt: OutputFormat) -> str:
    """The output format said in words, for an upstream whose API has no `response_format`."""
    if fmt.schema is None:
        return "Answer with a single JSON object and nothing else."
    return ("Answer with a single JSON object and nothing else, valid against this JSON schema:\n"
            + json.dumps(fmt.schema))


def check_calls(calls: tuple[ToolCall, ...], tools: ToolSet) -> str | None:
    """Why these calls cannot be returned (None: they can): each names an offered function, its arguments
    valid against that function's parameters; under tool_choice required (or a named function) there is one."""
    if tools.choice in ("required", "function") and not any(tools.name in (None, c.name) for c in calls):
        return f"tool_choice {tools.name or tools.choice}: the answer makes no such call"
    offered = {t.name: t for t in tools.tools}
    for c in calls:
        fn = offered.get(c.name)
        if fn is None:
            return f"calls {c.name!r}, which was not offered"
        why = check_output(c.arguments or "{}", OutputFormat("json_schema", fn.parameters or {"type": "object"}))
        if why is not None:
            return f"call {c.name}({c.arguments[:60]}): arguments {why}"
    return None


def check_output(text: str, fmt: OutputFormat) -> str | None:
    """Why `text` cannot be returned under `fmt` (None: it can): it must parse, and validate against
    the schema when there is one."""
    try:
        value = json.loads(text)
    except ValueError as e:
        return f"not JSON ({e.msg} at char {e.pos})"
    if fmt.schema is None:
        return None if isinstance(value, dict) else f"JSON, but a {type(value).__name__}, not an object"
    import jsonschema  # validation is this function's whole job; loaded on first use

    try:
        jsonschema.validate(value, fmt.schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        return f"does not validate against the schema{' at ' + where if where else ''}: {e.message}"
    except jsonschema.SchemaError as e:
        return f"the schema itself is invalid: {e.message}"
    return None
