"""The batch output file: one OpenAI batch output record per line, never lost.

    {"id": "batch_req_...", "custom_id": "a",
     "response": {"status_code": 200, "request_id": "req_...", "body": {...}}, "error": null}

A failed item keeps the HTTP response it got (status_code != 200, the error
body) and also fills "error": {"code", "message"}; an item that got no HTTP
response at all (the proxy unreachable) has "response": null.

Durability: each record is one os.write of one complete line on an O_APPEND
descriptor, then fsync. A crash can only leave a partial *last* line, which
`OutputFile.open` truncates. The file is locked (flock) while a run writes it.

Retries: a `--retry-failed` run appends the new record after the old error
line, so for a moment an id has two lines; readers take the *last* line per id,
and the run ends by compacting the file atomically (temp file + fsync +
rename) to exactly one line per id. A run killed before compacting leaves the
duplicates, which are still read correctly and compacted by the next run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from w2s.proxy.core.errors import W2SError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the rest still holds
    fcntl = None  # type: ignore[assignment]


@dataclass
class Outcome:
    """What running one item produced, before it becomes a record."""

    request_id: str
    status: int | None  # HTTP status; None = no HTTP response at all
    body: dict[str, Any] | None  # the completion object, or the error body
    error_code: str | None = None  # set for failures without an error body (no response)
    error_message: str | None = None
    upstream_tokens: int = 0  # what the search spent (prompt + completion, every round)
    scorer_tokens: int = 0
    # What it cost upstream (docs/cost.md): calls, prompt tokens (cached: the prompt cache's share), completion
    # tokens, cost_usd where priced, and the returned answers' own tokens (a plain draw's: the multiplier's base).
    upstream_calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    answer_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body is not None and self.error_code is None


def make_record(record_id: str, custom_id: str, outcome: Outcome) -> dict[str, Any]:
    response = None
    if outcome.status is not None:
        response = {"status_code": outcome.status, "request_id": outcome.request_id, "body": outcome.body}
    error = None
    if not outcome.ok:
        detail = (outcome.body or {}).get("error") if isinstance(outcome.body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        code = outcome.error_code or detail.get("code") or detail.get("type") or f"http_{outcome.status}"
        message = outcome.error_message or detail.get("message") or f"HTTP {outcome.status}"
        error = {"code": str(code), "message": str(message)}
    return {"id": record_id, "custom_id": custom_id, "response": response, "error": error}


def record_ok(rec: Any) -> bool | None:
    """True/False for a valid record (succeeded or not), None for anything else."""
    if not isinstance(rec, dict) or not isinstance(rec.get("custom_id"), str) or "error" not in rec:
        return None
    resp = rec.get("response")
    if resp is not None and not isinstance(resp, dict):
        return None
    return rec["error"] is None and isinstance(resp, dict) and resp.get("status_code") == 200


def batch_identity(rec: Any) -> tuple[str, bool] | None:
    """(custom_id, succeeded) for a batch output record, None for anything else."""
    ok = record_ok(rec)
    return None if ok is None else (rec["custom_id"], ok)


# A parsed line -> (its id, whether it succeeded), or None when the line is not a record.
Identify = Callable[[Any], "tuple[str, bool] | None"]


@dataclass
class OutputState:
    """What an existing output file says, last line per id winning."""

    ok: dict[str, bool] = field(default_factory=dict)  # custom_id -> its last record succeeded
    lines: int = 0  # valid record lines
    repeated: int = 0  # lines for an id already seen (a retry not compacted yet)
    corrupt: list[int] = field(default_factory=list)  # complete lines that are not records
    truncated_bytes: int = 0  # a partial last line removed on open


class OutputFile:
    """Append-only writer with the resume scan, the repair and the compaction.

    `identify` says what a record is (batch output records by default; `w2s
    make-prefs` keeps its samples log with the same machinery)."""

    def __init__(self, path: str | Path, identify: Identify = batch_identity):
        self.path = Path(path)
        self.identify = identify
        self._fd: int | None = None

    def open(self) -> OutputState:
        """Lock, cut a partial last line, and read what is already there."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise W2SError(f"cannot open output {self.path}: {e.strerror}") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.close()
                raise W2SError(f"{self.path} is being written by another w2s run") from None
        data = self.path.read_bytes()
        cut = 0
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1  # 0 when the only line is partial
            cut = len(data) - keep
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
            data = data[:keep]
        state = scan(data, self.identify)
        state.truncated_bytes = cut
        return state

    def append(self, record: dict[str, Any]) -> None:
        assert self._fd is not None, "open() first"
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:  # os.write may write less than asked (e.g. a signal); finish the line
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def compact(self) -> int:
        """Rewrite atomically with exactly the last record per id; returns lines dropped.

        Ids keep the position of their first line, so a finished file reads in
        the order items first completed.
        """
        data = self.path.read_bytes()
        last: dict[str, bytes] = {}
        total = 0
        for raw in data.splitlines():
            if not raw.strip():
                continue
            total += 1
            known = self.identify(_parse(raw))
            if known is not None:
                last[known[0]] = raw  # dict keeps first-insertion order
        write_atomic(self.path, b"".join(raw + b"\n" for raw in last.values()))
        return total - len(last)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock too
            self._fd = None


def scan(data: bytes, identify: Identify = batch_identity) -> OutputState:
    st = OutputState()
    for lineno, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        known = identify(_parse(raw))
        if known is None:
            st.corrupt.append(lineno)
            continue
        st.lines += 1
        rid, ok = known
        if rid in st.ok:
            st.repeated += 1
        st.ok[rid] = ok
    return st


def read_records(path: Path, identify: Identify) -> dict[str, Any]:
    """The last record per id of an output file (a missing file: none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    out: dict[str, Any] = {}
    for raw in data.splitlines():
        rec = _parse(raw) if raw.strip() else None
        known = identify(rec)
        if known is not None:
            out[known[0]] = rec
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step (temp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)
