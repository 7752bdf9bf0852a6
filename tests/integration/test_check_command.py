"""`w2s check` as a real subprocess against each kind of misbehaving server (tests/support/fault_upstream.py),
a dead one, and the project's own pass-through server over the session's models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.configs import REPO
from tests.support.fault_upstream import FaultUpstream


def w2s_check(tmp_path: Path, up: dict, name: str = "odd") -> tuple[int, str]:
    cfg = tmp_path / "check.yaml"
    cfg.write_text(yaml.safe_dump({"upstreams": {name: up}}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "--config", str(cfg), "check", name], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr



def verdicts(out: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.startswith("  ") and len(line.split()) > 1 and not line.startswith("   ")}



@pytest.mark.parametrize("modes, mode, rc, expect, advice", [
    ({}, "chat-continue", 0, {"n": "ok", "continuation:vllm": "ok", "continuation:plain": "ok", "stop": "ok",
                              "usage": "ok"}, "continuation: vllm"),
    ({"style": "partial"}, "chat-continue", 0, {"continuation:vllm": "NO", "continuation:prefix": "NO",
                                                "continuation:partial": "ok", "continuation:plain": "NO"},
     "continuation: partial"),
    ({"ignore_n": True}, "completions", 0, {"n": "NO", "continuation": "ok"}, "max_n: 1"),
    ({"new_turn": True}, "chat-continue", 1, {f"continuation:{s}": "NO" for s in ("vllm", "prefix", "partial",
                                                                                   "plain")}, "mode: chat-only"),
    ({"include_usage": False}, "completions", 0, {"usage": "NO"}, None),
    ({"echo_stops": True}, "completions", 0, {"stop": "NO", "continuation": "ok"}, None),
])
def test_w2s_check_against_each_kind_of_server(tmp_path, server_thread, modes, mode, rc, expect, advice):
    fake = server_thread.run(FaultUpstream(**modes).start())
    try:
        code, out = w2s_check(tmp_path, {"provider": "openai", "mode": mode, "model": "fake",
                                         "base_url": f"{fake.base_url}/v1", "api_key": "sk-check-secret"})
    finally:
        server_thread.run(fake.close())
    got = verdicts(out)
    assert code == rc, out
    assert {k: got.get(k) for k in expect} == expect, out
    assert "latency" not in out or "ms" in out
    assert (advice in out) if advice else True
    assert "sk-check-secret" not in out and ("CBS can run as configured" in out) == (rc == 0)



def test_w2s_check_a_dead_upstream_exits_non_zero(tmp_path):
    code, out = w2s_check(tmp_path, {"provider": "openai", "mode": "completions", "model": "m",
                                     "base_url": "http://127.0.0.1:9/v1", "timeout": 2})
    assert code == 1 and "cannot connect" in out



def test_w2s_check_against_the_projects_own_pass_through_server(tmp_path, live):
    code, out = w2s_check(tmp_path, {"provider": "openai", "mode": "completions", "model": "gemma-passthrough",
                                     "base_url": live.v1, "max_n": 16}, name="own")
    got = verdicts(out)
    assert code == 0, out
    assert got["reachable"] == "ok" and got["n"] == "ok" and got["usage"] == "ok" and got["seed"] == "ok", out
