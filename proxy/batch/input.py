"""Reading a batch input file: JSONL lines -> items to run, or bad lines to report.

Two line forms are accepted:

  OpenAI Batch API:  {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
  simple:            {"id": "a", "prompt": "..."}  or  {"id": "a", "messages": [...]}
                     plus any request field ("model", "max_tokens", "w2s": {...}, ...)

Only the envelope is checked here (JSON, id, method, url, shapes). The body is
validated later exactly as the server validates it, so a bad body field becomes
that item's 400 error line, not a malformed input line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.proxy.api.openai_bodies import CHAT_URL, TEXT_URL
from w2s.proxy.core.jsonl_lines import BadLine, Malformed, classify_lines, load_json

URLS = (CHAT_URL, TEXT_URL)
OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})


@dataclass(frozen=True)
class BatchItem:
    custom_id: str
    url: str  # CHAT_URL or TEXT_URL: which endpoint's body this is
    body: dict[str, Any]
    line: int  # 1-based line number in the input file


@dataclass
class BatchInput:
    items: list[BatchItem] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)

    def duplicates(self) -> dict[str, list[int]]:
        """custom_id -> its line numbers, for every id given more than once."""
        seen: dict[str, list[int]] = {}
        for it in self.items:
            seen.setdefault(it.custom_id, []).append(it.line)
        return {cid: lines for cid, lines in seen.items() if len(lines) > 1}


def read_input(path: str | Path) -> BatchInput:
    """Every line of `path`, classified."""
    with open(path, "rb") as f:
        return BatchInput(*classify_lines(f, parse_line))


def parse_line(raw: bytes | str, lineno: int) -> BatchItem:
    obj = load_json(raw)
    if not isinstance(obj, dict):
        raise Malformed(f"expected a JSON object, got {_kind(obj)}")
    if "custom_id" in obj or "body" in obj or "url" in obj:
        return _openai_form(obj, lineno)
    return _simple_form(obj, lineno)


def _openai_form(obj: dict, lineno: int) -> BatchItem:
    cid = _id(obj, "custom_id")
    unknown = sorted(set(obj) - OPENAI_KEYS)
    if unknown:
        raise Malformed(f"unknown key {unknown[0]!r} (a batch request has custom_id, method, url, body)")
    method = obj.get("method", "POST")
    if method != "POST":
        raise Malformed(f"method must be \"POST\", got {method!r}")
    url = obj.get("url")
    if url not in URLS:
        raise Malformed(f"unknown url {url!r} (supported: {', '.join(URLS)})")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise Malformed(f"body must be a JSON object, got {_kind(body)}")
    return BatchItem(cid, url, body, lineno)


def _simple_form(obj: dict, lineno: int) -> BatchItem:
    cid = _id(obj, "id")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt == has_messages:
        raise Malformed("needs exactly one of \"prompt\" or \"messages\"")
    if has_prompt and not isinstance(obj["prompt"], str):
        raise Malformed(f"prompt must be a string, got {_kind(obj['prompt'])}")
    if has_messages and not (isinstance(obj["messages"], list) and obj["messages"]
                             and all(isinstance(m, dict) for m in obj["messages"])):
        raise Malformed("messages must be a non-empty list of {role, content} objects")
    if "model" in obj and not isinstance(obj["model"], str):
        raise Malformed(f"model must be a string, got {_kind(obj['model'])}")
    if "w2s" in obj and not isinstance(obj["w2s"], dict):
        raise Malformed(f"w2s must be an object of search overrides, got {_kind(obj['w2s'])}")
    body = {k: v for k, v in obj.items() if k != "id"}
    return BatchItem(cid, CHAT_URL if has_messages else TEXT_URL, body, lineno)


def _id(obj: dict, key: str) -> str:
    if key not in obj:
        other = "custom_id" if key == "id" else "id"
        raise Malformed(f"missing {key!r}" + (f" (this form uses {key!r}, not {other!r})" if other in obj else ""))
    cid = obj[key]
    if not isinstance(cid, str) or not cid:
        raise Malformed(f"{key} must be a non-empty string, got {cid!r}")
    return cid


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")
