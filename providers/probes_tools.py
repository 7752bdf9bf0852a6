"""`w2s check`'s tools and structured-output probes (providers/probes.py runs them on upstreams with a
tool API): a call forced with `tool_choice: required`, one left to the model (`auto`), and a JSON answer
under a schema, each through the sampler's own path, so a shape the server refuses is learned on the way
(providers/tool_shapes.py) and the verdict says the shape that worked."""
from __future__ import annotations

import json
import time
from typing import Any

from w2s.proxy.core.errors import UpstreamError
from w2s.proxy.core.tools import FunctionTool, OutputFormat, ToolSet, check_calls, check_output
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest

WEATHER = FunctionTool("get_weather", "The current weather in a city",
                       {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
ASK = ({"role": "user", "content": "What is the weather in Paris right now?"},)
PERSON = OutputFormat("json_schema", {"type": "object", "properties": {"name": {"type": "string"},
                                                                        "age": {"type": "integer"}},
                                      "required": ["name", "age"]}, name="person")
ASK_JSON = ({"role": "user", "content": "Invent a person. Reply in JSON with their name and age."},)


async def _draw(s: Any, prompt: Prompt):
    """(the chunk, seconds, error text): one whole answer at temperature 0 through the sampler's path."""
    req = SampleRequest(prompt, [Continuation("", 96)], temperature=0.0, seed=0)
    t0 = time.perf_counter()
    try:
        out = await s.sample(req)
    except UpstreamError as e:
        return None, time.perf_counter() - t0, e.message[:160]
    chunk = out.chunks[0]
    return chunk, time.perf_counter() - t0, chunk.error


def _shape(s: Any, key: str) -> str:
    shapes = getattr(s, "shapes", None)
    return shapes.report()[{"tools": "tools", "format": "structured_output"}[key]] if shapes is not None else "api"


async def tool_verdicts(s: Any, verdict) -> list:
    """The three verdicts; `verdict` builds one (probes.Verdict)."""
    out = []
    for choice in ("required", "auto"):
        tools = ToolSet((WEATHER,), choice)
        chunk, seconds, err = await _draw(s, Prompt(messages=ASK, tools=tools))
        if err is not None:
            out.append(verdict(f"tools ({choice})", False, f"failed: {err}", seconds))
            continue
        calls = ", ".join(f"{c.name}({c.arguments})" for c in chunk.tool_calls)
        misfit = check_calls(chunk.tool_calls, tools) if chunk.tool_calls else None
        what = (f"a call: {calls}" + (f", which does not fit ({misfit})" if misfit else "")) if calls else \
            f"text, no call: {chunk.text[:60]!r}"
        ok = bool(calls) and misfit is None if choice == "required" else misfit is None
        out.append(verdict(f"tools ({choice})", ok, f"{what}; tools sent as {_shape(s, 'tools')}", seconds))
    out.append(await _json_verdict(s, verdict))
    return out


async def _json_verdict(s: Any, verdict):
    chunk, seconds, err = await _draw(s, Prompt(messages=ASK_JSON, output=PERSON))
    if err is not None:
        return verdict("structured output", False, f"failed: {err}", seconds)
    why = check_output(chunk.text, PERSON)
    shape = _shape(s, "format")
    if why is None:
        return verdict("structured output", True, f"valid under the schema: {json.dumps(json.loads(chunk.text))}; "
                       f"sent as {shape}", seconds)
    return verdict("structured output", False, f"{why} (sent as {shape}): the proxy validates every answer and "
                   "returns only valid ones", seconds)
