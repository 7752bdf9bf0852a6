"""Reading a preference file: JSONL lines -> preference pairs, or bad lines to report.

The common preference format (TRL's, and what `w2s make-prefs` writes), with an
explicit prompt, as plain strings or as chat messages:

    {"prompt": "Review the film.", "chosen": "A joy.", "rejected": "A bore."}
    {"prompt": [{"role": "user", "content": "Review the film."}],
     "chosen": [{"role": "assistant", "content": "A joy."}],
     "rejected": [{"role": "assistant", "content": "A bore."}]}

A string prompt is a raw prompt, rendered exactly as a /v1/completions prompt is
for the guide; a message list is a chat, and a trailing assistant message is a
prefill both answers continue. Other keys (an id, judge scores) are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.proxy.core.jsonl_lines import BadLine, Malformed, classify_lines, load_json
from w2s.proxy.core.types import Prompt, content_text

ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class Preference:
    line: int  # 1-based line in the file
    prompt: Prompt
    chosen: str
    rejected: str

    @property
    def prompt_key(self) -> str:
        """Equal for pairs on the same prompt (the held-out split keeps them together)."""
        p = self.prompt
        return json.dumps([p.text, p.messages, p.prefill], sort_keys=True)


@dataclass
class PrefFile:
    prefs: list[Preference] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def read_prefs(path: str | Path) -> PrefFile:
    """Every line of `path`, classified."""
    with open(path, "rb") as f:
        return PrefFile(*classify_lines(f, parse_pref))


def parse_pref(raw: bytes | str, lineno: int) -> Preference:
    obj = load_json(raw)
    if not isinstance(obj, dict):
        raise Malformed("expected a JSON object with prompt, chosen and rejected")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in obj]
    if missing:
        raise Malformed(f"missing {', '.join(repr(k) for k in missing)} (a preference line has "
                        "prompt, chosen and rejected)")
    prompt = _prompt(obj["prompt"])
    chosen, rejected = _answer(obj["chosen"], "chosen"), _answer(obj["rejected"], "rejected")
    if chosen == rejected:
        raise Malformed("chosen and rejected are the same text: the pair states no preference")
    return Preference(lineno, prompt, chosen, rejected)


def _prompt(v: Any) -> Prompt:
    if isinstance(v, str):
        return Prompt.raw(v)
    if not isinstance(v, list) or not v:
        raise Malformed("prompt must be a string or a non-empty list of {role, content} messages")
    for i, m in enumerate(v):
        _check_message(m, f"prompt[{i}]")
    if all(m["role"] in ("system", "developer") for m in v):
        raise Malformed("prompt has no user or assistant message")
    return Prompt.chat(v)


def _answer(v: Any, key: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and len(v) == 1:
        _check_message(v[0], f"{key}[0]")
        if v[0]["role"] == "assistant":
            return content_text(v[0]["content"])
    raise Malformed(f"{key} must be a string or a list of one assistant message")


def _check_message(m: Any, where: str) -> None:
    if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
        raise Malformed(f"{where} must be a {{role, content}} message with role one of {', '.join(ROLES)}")
    c = m["content"]
    if not (isinstance(c, str) or (isinstance(c, list) and all(isinstance(p, dict) for p in c))):
        raise Malformed(f"{where}.content must be a string or a list of content parts")
