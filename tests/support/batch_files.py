"""Batch input and output files for the `w2s batch` tests."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from w2s.proxy.api.openai_bodies import CHAT_URL, TEXT_URL
from w2s.proxy.batch.output import record_ok
from w2s.proxy.batch.run import BatchOptions

FAST = {"max_tokens": 3}  # for pass-through items


def line(obj) -> str:
    return json.dumps(obj)


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def mixed_lines() -> tuple[list[str], set[str], set[int]]:
    """(lines, ids that must end up in the output, 1-based numbers of the bad lines)."""
    lines = [
        line({"id": "p1", "prompt": "Review of the film Jaws:", **FAST}),  # simple prompt, default route
        line({"id": "m1", "messages": chat("Review Up."), "model": "passthrough", **FAST}),  # simple chat
        '{"id": "broken", "prompt": "Review of',  # malformed JSON
        line({"custom_id": "c1", "method": "POST", "url": CHAT_URL,
              "body": {"model": "passthrough", "messages": chat("Review Alien."), "max_completion_tokens": 3}}),
        line({"custom_id": "t1", "method": "POST", "url": TEXT_URL,
              "body": {"prompt": "Review of the film Heat:", "max_tokens": 3, "seed": 7}}),
        line({"custom_id": "u1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}),  # unknown url
        line({"prompt": "no id at all"}),  # missing id
        line({"id": "nr", "prompt": "Review of Up:", "model": "no-such-route"}),  # a 404 line, not a bad line
        line({"id": ["x"], "prompt": "wrong type of id"}),  # wrong types
    ]
    return lines, {"p1", "m1", "c1", "t1", "nr"}, {3, 6, 7, 9}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(l + "\n" for l in lines))
    return path


def assert_valid_jsonl(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the last line must be complete"
    records = [json.loads(l) for l in raw.decode().splitlines()]  # raises on any bad line
    for r in records:
        assert set(r) == {"id", "custom_id", "response", "error"} and r["id"].startswith("batch_req_")
        assert record_ok(r) is not None
    return records


def assert_each_once(path: Path, ids: set[str]) -> dict[str, dict]:
    records = assert_valid_jsonl(path)
    counts = Counter(r["custom_id"] for r in records)
    assert set(counts) == ids and set(counts.values()) == {1}, counts
    return {r["custom_id"]: r for r in records}


def options(inp: Path, out: Path, **kw) -> BatchOptions:
    return BatchOptions(input=inp, output=out, progress=False, **kw)
