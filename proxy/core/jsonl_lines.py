"""JSONL input, line by line: each line parses to an item or becomes a reported bad line.

Batch inputs and preference files share this: a file of many lines should not fail for one bad
line, so the parsers raise Malformed and the line is reported and skipped. The caller opens the
file (core does no I/O) and passes the open binary file or any iterable of lines.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based
    reason: str


class Malformed(ValueError):
    """One line that is not what the file holds; the message says why."""


def classify_lines(lines: Iterable[bytes | str], parse: Callable[[bytes | str, int], T]
                   ) -> tuple[list[T], list[BadLine]]:
    """Every non-blank line parsed (blank lines are ignored: editors add them)."""
    items: list[T] = []
    bad: list[BadLine] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            items.append(parse(raw, lineno))
        except Malformed as e:
            bad.append(BadLine(lineno, str(e)))
    return items, bad


def load_json(raw: bytes | str) -> Any:
    """One line's JSON value; bytes so that one bad UTF-8 line is that line's problem only."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as e:
        raise Malformed(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise Malformed(f"not valid JSON ({e.msg} at column {e.colno})") from None
