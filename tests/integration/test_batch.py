"""`w2s batch`: both input forms, bad lines, resume after SIGINT / SIGKILL,
partial-line repair, --retry-failed, and --url against a live proxy.

Real models throughout (tiny searches: this machine has 2 slow cores). The
kill tests run the real CLI as a subprocess; the rest run `run_batch` on the
session's engine, so they pay no model loading.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.batch_files import (
    FAST,
    assert_each_once,
    assert_valid_jsonl,
    chat,
    line,
    mixed_lines,
    options,
    write_lines,
)
from tests.support.configs import make_config_dict
from w2s.proxy.api.openai_bodies import CHAT_URL, TEXT_URL
from w2s.proxy.batch.run import exit_status, run_batch

REPO = Path(__file__).resolve().parents[2]
TINY = {"w": 2, "k": 2, "l": 4, "max_tokens": 4}  # one CBS round of 4 upstream tokens


def tiny_config_file(tmp_path: Path) -> Path:
    d = make_config_dict(**TINY)
    d["routes"]["passthrough"]["search"]["max_tokens"] = FAST["max_tokens"]
    d["default_route"] = "passthrough"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


# --- the CLI as a subprocess ------------------------------------------------------


def test_duplicate_ids_abort_before_any_work(tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [
        line({"id": "a", "prompt": "x"}),
        line({"custom_id": "b", "method": "POST", "url": TEXT_URL, "body": {"prompt": "y"}}),
        line({"id": "a", "messages": chat("z")}),
    ])
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "--config", str(tiny_config_file(tmp_path)),
                           "batch", str(inp), "-o", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "duplicate ids" in proc.stderr and "'a' on lines 1, 3" in proc.stderr
    assert not out.exists()  # nothing was run, nothing was written


# --- the real models, in process ------------------------------------------------


async def test_mixed_file_in_process(engine, tmp_path, capsys):
    lines, ids, bad = mixed_lines()
    lines += [
        # A guided search with its trace, through the CBS route.
        line({"custom_id": "g1", "method": "POST", "url": CHAT_URL, "body": {
            "model": "w2s-test", "messages": chat("Write a review of Titanic."), "w2s": {**TINY, "trace": True}}}),
        line({"id": "st", "prompt": "x", "stream": True}),  # a 400 line: no streaming in a batch
        line({"id": "uf", "prompt": "x", "tools": [{"type": "function"}]}),  # a 400 line: unsupported field
        line({"id": "bo", "prompt": "x", "w2s": {"beams": 3}}),  # a 400 line: unknown search option
    ]
    inp = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    # --model passthrough: the route of every item that names none.
    report = await run_batch(engine.config, options(inp, out, concurrency=2, route="passthrough"), engine=engine)
    err = capsys.readouterr().err
    for n in bad:
        assert f"in.jsonl:{n}:" in err
    recs = assert_each_once(out, ids | {"g1", "st", "uf", "bo"})

    assert (report.done, report.failed, report.malformed, report.skipped) == (5, 4, 4, 0)
    assert exit_status(report) == 1  # failed items and bad lines: not a clean run
    assert report.upstream_tokens > 0 and report.scorer_tokens > 0
    assert report.scorer_batches >= 1 and report.mean_batch_rows >= 1

    for cid in ("p1", "t1"):
        body = recs[cid]["response"]["body"]
        assert recs[cid]["error"] is None and recs[cid]["response"]["status_code"] == 200
        assert body["object"] == "text_completion" and body["model"] == "passthrough"
        assert body["choices"][0]["finish_reason"] in ("stop", "length") and "w2s" not in body
        assert body["usage"]["completion_tokens"] <= 3
    for cid in ("m1", "c1", "g1"):
        body = recs[cid]["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    g1 = recs["g1"]["response"]["body"]
    assert g1["model"] == "w2s-test" and g1["w2s"]["mode"] == "cbs" and len(g1["w2s"]["rounds"]) == 1
    assert g1["w2s"]["answers"][0]["text"] == g1["choices"][0]["message"]["content"]

    nr = recs["nr"]
    assert nr["response"]["status_code"] == 404 and nr["error"]["code"] == "model_not_found"
    assert nr["response"]["body"]["error"]["type"] == "not_found_error"
    for cid, param in (("st", "stream"), ("uf", "tools"), ("bo", "w2s.beams")):
        assert recs[cid]["response"]["status_code"] == 400
        assert recs[cid]["response"]["body"]["error"]["param"] == param
        assert recs[cid]["error"]["message"] == recs[cid]["response"]["body"]["error"]["message"]


async def test_trace_flag_puts_the_search_trace_in_every_body(engine, tmp_path):
    from w2s.proxy.api.trace import traces_in

    inp = write_lines(tmp_path / "in.jsonl", [
        line({"id": "a", "prompt": "Review of Jaws:", **FAST}),
        line({"id": "b", "prompt": "Review of Up:", "w2s": {"max_tokens": 2}}),  # its own overrides are kept
    ])
    out = tmp_path / "out.jsonl"
    report = await run_batch(engine.config, options(inp, out, route="passthrough", trace=True), engine=engine)
    assert (report.done, report.failed) == (2, 0)
    recs = assert_each_once(out, {"a", "b"})
    for cid, prompt in (("a", "Review of Jaws:"), ("b", "Review of Up:")):
        trace = recs[cid]["response"]["body"]["w2s"]
        assert trace["version"] == 2 and trace["prompt"]["text"] == prompt and len(trace["rounds"]) == 1
    assert recs["b"]["response"]["body"]["w2s"]["params"]["max_tokens"] == 2
    assert [label for label, _ in traces_in(out.read_text())] == ["a", "b"]  # what `w2s view` and the page read


async def test_resume_repairs_a_partial_last_line(engine, tmp_path):
    items = [line({"id": f"p{i}", "prompt": f"Review number {i}:", **FAST}) for i in range(3)]
    out = tmp_path / "out.jsonl"
    first = await run_batch(engine.config, options(write_lines(tmp_path / "a.jsonl", items[:2]), out,
                                                   route="passthrough"), engine=engine)
    assert first.done == 2
    # A crash in the middle of writing p2's line: half a record, no newline.
    before = out.read_bytes()
    half = line({"id": "batch_req_x", "custom_id": "p2", "response": {"status_code": 200}, "error": None})
    out.write_bytes(before + half[: len(half) // 2].encode())

    inp = write_lines(tmp_path / "b.jsonl", items)
    report = await run_batch(engine.config, options(inp, out, route="passthrough"), engine=engine)
    assert (report.skipped, report.done) == (2, 1)
    assert out.read_bytes().startswith(before)  # the old lines are untouched
    recs = assert_each_once(out, {"p0", "p1", "p2"})
    assert recs["p2"]["response"]["status_code"] == 200


async def test_retry_failed_reruns_only_failures_and_compacts(engine, tmp_path):
    cfg = engine.config
    inp = write_lines(tmp_path / "in.jsonl", [
        line({"id": "ok", "prompt": "Review of Jaws:", "model": "passthrough", **FAST}),
        line({"id": "late", "prompt": "Review of Heat:", "model": "late-route", **FAST}),
    ])
    out = tmp_path / "out.jsonl"
    first = await run_batch(cfg, options(inp, out), engine=engine)
    assert (first.done, first.failed, exit_status(first)) == (1, 1, 1)
    ok_line = [l for l in out.read_text().splitlines() if '"custom_id":"ok"' in l]

    again = await run_batch(cfg, options(inp, out), engine=engine)  # no retry: the error line stands
    assert (again.skipped, again.skipped_failed, again.done, again.failed, exit_status(again)) == (2, 1, 0, 0, 1)

    cfg.routes["late-route"] = cfg.routes["passthrough"]  # the route the item wanted now exists
    try:
        retry = await run_batch(cfg, options(inp, out, retry_failed=True), engine=engine)
    finally:
        del cfg.routes["late-route"]
    assert (retry.skipped, retry.done, retry.failed, exit_status(retry)) == (1, 1, 0, 0)
    recs = assert_each_once(out, {"ok", "late"})  # compacted: the old error line is gone
    assert recs["late"]["error"] is None and recs["late"]["response"]["body"]["model"] == "late-route"
    assert [l for l in out.read_text().splitlines() if '"custom_id":"ok"' in l] == ok_line  # untouched


# --- the real CLI, killed mid-run ---------------------------------------------------


def start_cli(tmp_path: Path, inp: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
    cmd = [sys.executable, "-m", "w2s.proxy.cli", "batch", str(inp), "-o", str(out),
           "--config", str(tiny_config_file(tmp_path)), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=f, env=env)
    return proc, log


def wait_for_first_line(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and b"\n" in out.read_bytes():
            return
        assert proc.poll() is None, "the batch ended before writing a line"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no output line within the timeout")


def kill_then_resume(tmp_path: Path, sig: int, *extra: str) -> tuple[int, str, str]:
    lines, ids, bad = mixed_lines()
    inp = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    proc, log1 = start_cli(tmp_path, inp, out, "--concurrency", "2", *extra)
    wait_for_first_line(proc, out)
    proc.send_signal(sig)
    rc1 = proc.wait(timeout=120)
    first = assert_valid_jsonl(out)
    assert 1 <= len(first) < len(ids), "the kill must land mid-run"
    first_bytes = out.read_bytes()

    proc, log2 = start_cli(tmp_path, inp, out, "--no-progress")
    assert proc.wait(timeout=300) == 1  # done, but with an item that failed and bad input lines
    recs = assert_each_once(out, ids)
    assert out.read_bytes().startswith(first_bytes)  # resumed by appending
    assert recs["nr"]["response"]["status_code"] == 404
    assert all(recs[i]["error"] is None for i in ids - {"nr"})
    err2 = log2.read_text()
    for n in bad:
        assert f"in.jsonl:{n}:" in err2
    assert f"{len(first)} skipped" in err2
    return rc1, log1.read_text(), err2


def test_sigint_stops_cleanly_and_the_same_command_resumes(tmp_path):
    rc, err1, _ = kill_then_resume(tmp_path, signal.SIGINT)  # progress bar on: it must not get in the way
    assert rc == 130, err1
    assert "SIGINT: stopping" in err1 and "interrupted" in err1 and "Traceback" not in err1
    assert "in.jsonl:3:" in err1


def test_sigkill_then_the_same_command_resumes(tmp_path):
    rc, _, _ = kill_then_resume(tmp_path, signal.SIGKILL, "--no-progress")
    assert rc == -signal.SIGKILL


# --- against a running proxy ----------------------------------------------------------


async def test_url_mode_matches_the_in_process_bodies(live, engine, tmp_path):
    greedy = {"model": "gemma-passthrough", "temperature": 0, **FAST}  # deterministic: comparable answers
    inp = write_lines(tmp_path / "in.jsonl", [
        line({"id": "a", "prompt": "Review of Jaws:", **greedy}),
        line({"custom_id": "b", "method": "POST", "url": CHAT_URL, "body": {"messages": chat("Review Up."), **greedy}}),
        line({"id": "c", "prompt": "x", "model": "no-such-route"}),
    ])
    out = tmp_path / "remote.jsonl"
    proc = await asyncio.to_thread(  # the proxy answers from this loop meanwhile
        subprocess.run, [sys.executable, "-m", "w2s.proxy.cli", "batch", str(inp), "-o", str(out),
                         "--url", live.v1, "--concurrency", "2", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    remote = assert_each_once(out, {"a", "b", "c"})
    assert remote["c"]["response"]["status_code"] == 404 and remote["c"]["error"]["code"] == "model_not_found"
    assert "2 done, 1 failed" in proc.stderr and "upstream" in proc.stderr

    # The same file in process, on the very engine behind the proxy.
    local_out = tmp_path / "local.jsonl"
    await run_batch(engine.config, options(inp, local_out), engine=engine)
    local = assert_each_once(local_out, {"a", "b", "c"})
    for cid in ("a", "b", "c"):
        r, l = remote[cid]["response"]["body"], local[cid]["response"]["body"]
        if "id" in r:
            assert r["id"][:4] == l["id"][:4] and abs(r.pop("created") - l.pop("created")) < 600
            r.pop("id"), l.pop("id")
        assert r == l, cid  # the very object the server returns
    assert remote["a"]["response"]["body"]["object"] == "text_completion"
    assert remote["b"]["response"]["body"]["object"] == "chat.completion"
