"""Anthropic wire models: POST /v1/messages and its stream events.

Same policy as the OpenAI side: strict types, a 400 naming any field the
proxy cannot honour (images, extended thinking, server tools...), harmless
fields accepted and ignored. Client tools, `tool_use` / `tool_result` history
blocks and `output_format` are taken (proxy/api/anthropic_tools.py): whole
answers, searched (docs/tools.md).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from w2s.proxy.api import anthropic_tools as at
from w2s.proxy.api import w2s_options
from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.types import Prompt


def _omit_none():
    return Field(default=None, exclude_if=lambda v: v is None)


# --- request side -------------------------------------------------------------

# No effect on the answer: accepted, ignored. (Anthropic's own SDK 2.x no longer
# sends temperature/top_p/top_k; older clients do, and they are honoured.)
IGNORED = frozenset({"metadata", "service_tier", "container", "inference_geo", "cache_control", "diagnostics",
                     "speed", "user_profile_id", "workspace_id"})


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "thinking": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "disabled"),
    "mcp_servers": _empty,
    "context_management": _empty,
    "output_config": _empty,
}

# Per-block keys with no effect on the text: prompt caching, citations config.
_BLOCK_KEYS = {"type", "text", "cache_control", "citations"}


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    stream: bool | None = False
    w2s: dict[str, Any] | None = None  # per-request search overrides (+ "trace")
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        w2s_options.check_extra_fields(self.model_extra, IGNORED, NEUTRAL)
        self.tool_set(), self.format()  # 400s naming the field
        if isinstance(self.system, list):
            _check_blocks(self.system, "system")
        for i, m in enumerate(self.messages):
            if isinstance(m.content, list):
                _check_blocks(m.content, f"messages[{i}].content", m.role)
        if self.stop_sequences is not None and len(self.stop_sequences) > 16:
            raise InvalidRequest("stop_sequences: at most 16 sequences", param="stop_sequences")

    def to_prompt(self) -> Prompt:
        msgs: list[dict] = []
        if self.system is not None:
            system = _text_of(self.system)
            if system:
                msgs.append({"role": "system", "content": system})
        for m in self.messages:
            if isinstance(m.content, list) and any(b.get("type") != "text" for b in m.content):
                msgs.extend(at.turns_of(m.role, m.content))
            else:
                msgs.append({"role": m.role, "content": _text_of(m.content)})
        return replace(Prompt.chat(msgs), tools=self.tool_set(), output=self.format())

    def tool_set(self):
        return at.tool_set(self.tools, self.tool_choice)

    def format(self):
        return at.output_format(self.output_format)

    def search_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": self.max_tokens}
        for key, value in (("temperature", self.temperature), ("top_p", self.top_p),
                           ("top_k", self.top_k), ("stop", self.stop_sequences)):
            if value is not None:
                out[key] = value
        out.update(w2s_options.overrides(self.w2s))
        return out


def _check_blocks(blocks: list[dict[str, Any]], where: str, role: str | None = None) -> None:
    for j, b in enumerate(blocks):
        kind = b.get("type")
        if kind in ("tool_use", "tool_result") and role is not None:
            at.check_tool_block(b, role, f"{where}[{j}]")
            continue
        if kind != "text":
            raise UnsupportedField(f"{where}[{j}]: only text content blocks are supported (got {kind!r})",
                                   param=f"{where}[{j}].type")
        if not isinstance(b.get("text"), str):
            raise InvalidRequest(f"{where}[{j}].text: must be a string", param=f"{where}[{j}].text")
        extra = sorted(set(b) - _BLOCK_KEYS)
        if extra:
            raise UnsupportedField(f"{where}[{j}].{extra[0]}: not supported by this proxy",
                                   param=f"{where}[{j}].{extra[0]}")


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if b.get("type") == "text")


# --- response side ------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class Message(BaseModel):
    id: str  # msg_...
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[TextBlock | at.ToolUseBlock]
    model: str  # the route name the client asked for
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage
    w2s: dict[str, Any] | None = _omit_none()  # the search trace, when asked for


class MessageStart(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStart(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int = 0
    content_block: TextBlock | at.ToolUseBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDelta(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int = 0
    delta: TextDelta | InputJsonDelta


class ContentBlockStop(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int = 0


class StopDelta(BaseModel):
    stop_reason: StopReason
    stop_sequence: str | None = None


class DeltaUsage(BaseModel):
    output_tokens: int


class MessageDelta(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: StopDelta
    usage: DeltaUsage
    w2s: dict[str, Any] | None = _omit_none()


class MessageStop(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class Ping(BaseModel):
    type: Literal["ping"] = "ping"


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
