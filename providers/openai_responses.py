"""`mode: responses`: OpenAI models served only on POST /v1/responses (e.g. the codex and pro models).

The Responses API cannot continue a partial answer (no trailing assistant
message is continued) and has no `n`, `seed` or `stop`, so this sampler draws
whole answers only, one call per draw; the search is guided Best-of-N,
labelled `bon-approx`. Stop strings are cut here. What it shares with the
other OpenAI ways of drawing (retries, limits, usage accounting) is
`OpenAISampler`'s (providers/openai.py).
"""
from __future__ import annotations

from typing import Any

from w2s.providers import responses_tools, tokens
from w2s.providers.openai import OpenAISampler
from w2s.providers.openai_draws import Call, Ctx, Drawn, cached_of
from w2s.providers.retry import MalformedResponse
from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.types import SampleRequest, SampleResult, content_text


class ResponsesSampler(OpenAISampler):
    """POST /v1/responses: the conversation as input items, one whole answer per call."""

    draw_mode = DrawMode.RESPONSES
    exact_continuation = False
    tool_api = True  # function tools, function_call items (providers/responses_tools.py)

    def __init__(self, name: str, cfg: Any, **kw):
        super().__init__(name, cfg, **kw)
        self.max_n = 1  # no `n` in the Responses API: every draw is its own call

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "max_n_source": "the Responses API has no n", "continuation": "none (responses)"}

    async def sample(self, request: SampleRequest) -> SampleResult:
        request = request.fold_prefill()
        if any(c.prefix for c in request.continuations):
            raise InvalidRequest(f"{self._label} cannot continue a partial answer (responses mode); "
                                 "only whole answers can be drawn")
        return await self._sample(request)

    def context(self, request: SampleRequest) -> Ctx:
        ctx = super().context(request)
        ctx.api_stops = []  # the API takes no stop strings: every one is cut here
        if request.seed is not None:
            ctx.notes.add(f"{self._label} takes no seed: its draws are not reproducible")
        return ctx

    def body(self, request: SampleRequest, call: Call) -> dict:
        messages = request.prompt.as_messages()
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        turns = responses_tools.input_items([m for m in messages if m not in system])
        kw: dict = {"model": self.cfg.model, "input": turns,
                    "temperature": request.temperature, "store": False, **responses_tools.fields(request.prompt)}
        if system:
            kw["instructions"] = "\n\n".join(content_text(m.get("content")) for m in system)
        if request.top_p != 1.0:
            kw["top_p"] = request.top_p
        if call.max_tokens is not None:
            kw["max_output_tokens"] = call.max_tokens
        return kw

    async def _request(self, ctx: Ctx, call: Call) -> Drawn:
        resp = await self.client.responses.create(**self.body(ctx.request, call),
                                                  extra_body=self.extra_body(ctx.request, call) or None)
        return parse_response(resp)

    def _prompt_estimate(self, enc, ctx: Ctx, call: Call) -> int:
        return tokens.count_messages(enc, ctx.request.prompt.as_messages())


def parse_response(resp: Any) -> Drawn:
    """A `response` object -> one draw; cut by max_output_tokens reads as finish "length"."""
    try:
        status = resp.status
        details = getattr(resp, "incomplete_details", None)
        text = resp.output_text
        calls = responses_tools.calls_in(getattr(resp, "output", None))
        usage = getattr(resp, "usage", None)
        prompt = getattr(usage, "input_tokens", None)
        completion = getattr(usage, "output_tokens", None)
    except (AttributeError, TypeError, ValueError) as e:
        raise MalformedResponse(type(e).__name__) from None
    if status == "failed" or not isinstance(text, str):
        raise MalformedResponse(f"response status {status!r}")
    cut = status == "incomplete" and getattr(details, "reason", None) == "max_output_tokens"
    ok = [v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None for v in (prompt, completion)]
    drawn = Drawn([text], ["length" if cut else "stop"], ok[0], ok[1], calls=[calls])
    drawn.cached_tokens = cached_of(usage)
    return drawn
