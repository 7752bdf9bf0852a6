"""config.yaml's commented examples: uncommented, each remote upstream parses and builds its sampler."""
from __future__ import annotations

import re

import yaml

from tests.support.configs import REPO
from w2s.providers.registry import make_sampler
from w2s.proxy.core.config_load import parse_config


async def test_config_yaml_remote_examples_parse_and_build(monkeypatch):
    """Uncommented, every example upstream in config.yaml parses and builds its sampler."""
    text = (REPO / "config.yaml").read_text()
    lines = []
    for line in text.splitlines():
        m = re.match(r"^  # (\s*[\w.-]+:(\s.*)?)$", line)  # a commented YAML key, not a prose comment
        lines.append("  " + m.group(1) if m else line)
    uncommented = "\n".join(lines)


    data = yaml.safe_load(uncommented)
    remote = {n: u for n, u in data["upstreams"].items() if u["provider"] != "local"}
    assert {u["provider"] for u in remote.values()} == {"openai", "anthropic"}
    assert {u.get("mode", "completions") for u in remote.values() if u["provider"] == "openai"} == {
        "completions", "chat-continue", "chat-only", "responses"}
    routes_using = {r["upstream"] for r in data["routes"].values()}
    assert set(remote) <= routes_using, "every example upstream has an example route"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-example")
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-kimi-example")
    cfg = parse_config(data, "config.yaml (examples uncommented)")
    for name in remote:
        s = make_sampler(name, cfg.upstreams[name], None)
        want = cfg.upstreams[name].draw_mode.continues
        assert s.exact_continuation is want, name
        await s.aclose()
