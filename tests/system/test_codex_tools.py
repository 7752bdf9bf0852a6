"""The Codex CLI (`npm install -g @openai/codex`) completes `codex exec` through the proxy with a custom
provider (wire_api responses): its function tools reach the upstream, the searched answer is a call to its
shell tool, Codex runs it, sends the output back as function_call_output, and prints the final answer.
The upstream is the scripted tool-calling server (tests/support/tool_upstream.py), so the run is the same
every time; the proxy runs in this process, Codex as a subprocess."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.scripted import ScriptedScorer
from tests.support.tool_upstream import ToolUpstream
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import ScoreItem
from w2s.proxy.engine import Engine

pytestmark = pytest.mark.skipif(shutil.which("codex") is None, reason="the Codex CLI is not installed")


def prefers_calls(item: ScoreItem) -> float:
    return 1000.0 if "<tool_call>" in item.text else float(len(item.text))


@pytest.fixture
def proxy(fresh_servers, server_thread):
    up = server_thread.run(ToolUpstream().start())
    base = {"base_url": up.v1, "model": "fake", "api_key": "unused", "max_retries": 0}
    config = parse_config({
        "models": {"m": {"source": "/nonexistent"}},
        "upstreams": {"cont": {"provider": "openai", "mode": "chat-continue", **base}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"agent": {"upstream": "cont", "guide": "g", "search": {"w": 2, "k": 2, "l": 4, "max_tokens": 64}}},
    }, "codex")
    engine = Engine(config, guides={"g": ScriptedScorer("g", prefers_calls)})
    server_thread.run(engine.start())
    yield fresh_servers(config, engine), up
    server_thread.run(engine.aclose())
    server_thread.run(up.close())


def test_codex_exec_runs_a_searched_tool_call_to_the_end(proxy, tmp_path):
    srv, up = proxy
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    (home / "config.toml").write_text(f'model = "agent"\nmodel_provider = "w2s"\n\n[model_providers.w2s]\n'
                                      f'name = "w2s-proxy"\nbase_url = "{srv.v1}"\nwire_api = "responses"\n')
    done = subprocess.run(["codex", "exec", "--skip-git-repo-check", "List the files in this directory."],
                          cwd=work, env={"PATH": _path(), "HOME": str(tmp_path), "CODEX_HOME": str(home)},
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    first, second = up.bodies("chat")[0], up.bodies("chat")[-1]
    assert "exec_command" in [t["function"]["name"] for t in first["tools"]]  # its tools reached the upstream
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command" and '"cmd": "ls"' in call["function"]["arguments"]
    assert second["messages"][-1]["role"] == "tool" and "notes.txt" in second["messages"][-1]["content"]
    assert "The tool said:" in out and "notes.txt" in out  # Codex ran the call and printed the final answer


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")
