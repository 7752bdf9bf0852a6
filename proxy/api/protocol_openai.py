"""OpenAI wire models: /v1/chat/completions, /v1/completions, /v1/models.

Requests are validated strictly (a string is not a number); every field the
proxy cannot honour is refused with a 400 naming it, unless it is sent at a
value that changes nothing (e.g. `logprobs: false`). Fields with no effect on
the answer (`user`, `metadata`, ...) are accepted and ignored. Chat requests
take tools and `response_format` (proxy/api/openai_tools.py): whole answers,
searched (docs/tools.md).

vLLM's extensions that OpenAI-compatible clients (this proxy's own `openai`
provider among them) send are honoured: `top_k`, and on chat requests
`continue_final_message` / `add_generation_prompt`. A conversation ending in an
assistant message is always continued (like Anthropic's prefill), so
`continue_final_message: true` (+ `add_generation_prompt: false`) is exactly the
default; asking for a new turn after a trailing assistant message
(`add_generation_prompt: true` or `continue_final_message: false` with one) is
a 400 naming the field, never silently done the other way.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from w2s.proxy.api import openai_tools as tw
from w2s.proxy.api import w2s_options
from w2s.proxy.core.errors import InvalidRequest, UnsupportedField
from w2s.proxy.core.types import Prompt

MAX_N = 16  # distinct answers per request: each one needs its own beam


def _omit_none():
    return Field(default=None, exclude_if=lambda v: v is None)


# --- request side -------------------------------------------------------------

# No effect on the answer: accepted, ignored.
IGNORED = frozenset({
    "user", "metadata", "store", "service_tier", "prompt_cache_key", "prompt_cache_retention",
    "safety_identifier", "parallel_tool_calls",
})


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


# Accepted only at a value that asks for nothing the proxy cannot do.
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "tools": _empty,
    "functions": _empty,
    "tool_choice": lambda v: v in (None, "none", "auto"),
    "function_call": lambda v: v in (None, "none", "auto"),
    "logprobs": lambda v: v in (None, False, 0),
    "top_logprobs": lambda v: v in (None, 0),
    "logit_bias": _empty,
    "response_format": lambda v: v is None or v == {"type": "text"},
    "frequency_penalty": lambda v: v in (None, 0),
    "presence_penalty": lambda v: v in (None, 0),
    "modalities": lambda v: v in (None, ["text"]),
    "audio": _empty,
    "prediction": _empty,
    "web_search_options": _empty,
    "reasoning_effort": _empty,
    "verbosity": _empty,
    "echo": lambda v: v in (None, False),
    "suffix": lambda v: v in (None, ""),
    "best_of": lambda v: v in (None, 1),
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # nothing to obfuscate: ignored


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. `refusal` on an echoed assistant turn

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None  # a `tool` turn: the call it answers
    function_call: Any = None
    audio: Any = None
    # DeepSeek/Mistral's and Kimi/Qwen's marks for "continue this assistant message": the same as
    # continue_final_message here (a trailing assistant message is always continued).
    prefix: bool | None = None
    partial: bool | None = None


class _Common(BaseModel):
    """Fields both OpenAI endpoints share."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None  # None: the config's default_route
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    top_k: int | None = Field(None, ge=-1)  # vLLM extension; -1 or 0 = no top-k
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    w2s: dict[str, Any] | None = None  # per-request search overrides (+ "trace")

    def check_supported(self) -> None:
        w2s_options.check_extra_fields(self.model_extra, IGNORED, NEUTRAL)
        if isinstance(self.stop, list) and len(self.stop) > 16:
            raise InvalidRequest("stop: at most 16 sequences", param="stop")

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def answer_max_tokens(self) -> int | None:
        return self.max_tokens

    def search_overrides(self) -> dict[str, Any]:
        """Standard fields first, then the `w2s` extras (more specific, so they win)."""
        out: dict[str, Any] = {}
        for key, value in (("max_tokens", self.answer_max_tokens()), ("temperature", self.temperature),
                           ("top_p", self.top_p), ("n", self.n), ("seed", self.seed),
                           ("stop", self.stop_list()),
                           ("top_k", self.top_k if self.top_k is not None and self.top_k > 0 else None)):
            if value is not None:
                out[key] = value
        out.update(w2s_options.overrides(self.w2s))
        return out


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # vLLM's chat-template flags (see the module docstring).
    continue_final_message: bool | None = None
    add_generation_prompt: bool | None = None
    # Tools and structured output (proxy/api/openai_tools.py): whole answers, searched.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        super().check_supported()
        self._check_continue_flags()
        self.tool_set(), self.output_format()  # 400s naming the field
        for i, m in enumerate(self.messages):
            _check_message(m, f"messages[{i}]")

    def _check_continue_flags(self) -> None:
        cont, gen = self.continue_final_message, self.add_generation_prompt
        trailing = len(self.messages) > 1 and self.messages[-1].role == "assistant"  # what Prompt.chat continues
        for i, m in enumerate(self.messages):
            for key in ("prefix", "partial"):
                if getattr(m, key) and not (trailing and i == len(self.messages) - 1):
                    raise InvalidRequest(f"messages[{i}].{key}: only the last message, an assistant message after "
                                         "at least one other, can be continued", param=f"messages[{i}].{key}")
        if cont and gen:
            raise InvalidRequest("continue_final_message and add_generation_prompt cannot both be true",
                                 param="continue_final_message")
        if cont and not trailing:
            raise InvalidRequest("continue_final_message: the conversation must end in an assistant message "
                                 "(after at least one other message)", param="continue_final_message")
        if trailing:
            for key, new_turn in (("continue_final_message", cont is False), ("add_generation_prompt", gen is True)):
                if new_turn:
                    raise UnsupportedField(f"{key}: a trailing assistant message is always continued by this "
                                           "proxy; a new turn after it is not supported", param=key)

    def to_prompt(self) -> Prompt:
        prompt = Prompt.chat([self._message(m, i) for i, m in enumerate(self.messages)])
        return replace(prompt, tools=self.tool_set(), output=self.output_format())

    @staticmethod
    def _message(m: ChatMessage, i: int) -> dict:
        out = m.model_dump(include={"role", "content", "name", "tool_call_id"}, exclude_none=True)
        if m.role == "assistant" and m.tool_calls:
            out["tool_calls"] = tw.history_calls(m.tool_calls, f"messages[{i}].tool_calls")
            out.setdefault("content", None)
        return out

    def tool_set(self):
        return tw.tool_set(self.tools, self.tool_choice, self.parallel_tool_calls)

    def output_format(self):
        return tw.output_format(self.response_format)

    def answer_max_tokens(self) -> int | None:
        # max_completion_tokens is the newer name; when both come it is the one meant.
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens



def _check_message(m: ChatMessage, where: str) -> None:
    if m.role == "function":
        raise UnsupportedField(f"{where}.role: legacy function results are not supported (use role: tool)",
                               param=f"{where}.role")
    if m.role == "tool" and not m.tool_call_id:
        raise InvalidRequest(f"{where}.tool_call_id: required on a tool message", param=f"{where}.tool_call_id")
    if m.tool_calls and m.role == "assistant":
        tw.history_calls(m.tool_calls, f"{where}.tool_calls")
    elif not _empty(m.tool_calls):
        raise UnsupportedField(f"{where}.tool_calls: only on an assistant message", param=f"{where}.tool_calls")
    for key in ("function_call", "audio"):
        if not _empty(getattr(m, key)):
            raise UnsupportedField(f"{where}.{key}: not supported by this proxy", param=f"{where}.{key}")
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            kind = part.get("type")
            if kind != "text" or not isinstance(part.get("text"), str):
                p = f"{where}.content[{j}]"
                raise UnsupportedField(f"{p}: only text content parts are supported (got {kind!r})",
                                       param=f"{p}.type")


class CompletionRequest(_Common):
    prompt: str | list[str]

    def check_supported(self) -> None:
        super().check_supported()
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise UnsupportedField("prompt: exactly one prompt per request is supported", param="prompt")

    def to_prompt(self) -> Prompt:
        return Prompt.raw(self.prompt if isinstance(self.prompt, str) else self.prompt[0])


# --- response side ------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None  # null beside tool calls when the answer has no text
    refusal: None = None
    tool_calls: list[tw.ToolCallOut] | None = _omit_none()


ChatFinish = Literal["stop", "length", "tool_calls"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: ChatFinish
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str  # chatcmpl-...
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str  # the route name the client asked for
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: None = None
    w2s: dict[str, Any] | None = _omit_none()  # the search trace, when asked for


class Delta(BaseModel):
    role: Literal["assistant"] | None = _omit_none()
    content: str | None = _omit_none()
    tool_calls: list[tw.ToolCallDelta] | None = _omit_none()


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: ChatFinish | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: None = None
    usage: Usage | None = None  # null on every chunk but the last when include_usage
    w2s: dict[str, Any] | None = _omit_none()


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class Completion(BaseModel):
    """A /v1/completions response and, with `finish_reason` null, a stream chunk."""

    id: str  # cmpl-...
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    system_fingerprint: None = None
    usage: Usage | None = None
    w2s: dict[str, Any] | None = _omit_none()


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "w2s-proxy"
    w2s: dict[str, Any]  # mode, description, upstream: what the route does, never a secret


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
