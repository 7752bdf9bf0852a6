"""`w2s check UPSTREAM`: probe an upstream as a careful user would before trusting it.

Each capability gets a verdict from a real call, with its latency: reachable
(the key accepted, the model listed), `n` honoured, exact continuation, stop
strings honoured, usage reported, seed honoured; on chat upstreams, tools
(forced and left to the model) and structured output, in the shape the server
takes (providers/probes_tools.py). The report ends with the
config lines that fit what was found, and whether CBS can run as configured
(`n` that is not honoured is fine: the proxy draws the rest as parallel calls).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import openai as sdk

from w2s.providers import continuation, probes_tools
from w2s.providers.openai import STYLES, ChatContinueSampler, OpenAISampler
from w2s.providers.openai_draws import Call
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.types import Continuation, SampleRequest

COUNT_PROMPT = continuation.PROMPT
STOP_PREFIX, STOP = "1, 2, 3, 4, 5", ", 8"  # a count continued at temperature 0 writes ", 6, 7, 8, ..."


@dataclass
class Verdict:
    capability: str
    ok: bool | None  # None: does not apply, or could not tell
    detail: str
    seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # config lines this finding calls for
    fatal: bool = False  # nothing else can be probed


@dataclass
class Report:
    upstream: str
    describe: str
    verdicts: list[Verdict] = field(default_factory=list)
    blocking: str | None = None  # why CBS cannot run as configured; None: it can

    def lines(self) -> list[str]:
        out = [f"w2s check {self.upstream}: {self.describe}"]
        for v in self.verdicts:
            mark = {True: "ok", False: "NO", None: "n/a"}[v.ok]
            took = f" ({v.seconds * 1000:.0f} ms)" if v.seconds is not None else ""
            out.append(f"  {v.capability:<21} {mark:<4} {v.detail}{took}")
        out.append("verdict: " + ("CBS can run as configured" if self.blocking is None
                                  else f"CBS cannot run as configured: {self.blocking}"))
        advice = {k: v for verdict in self.verdicts for k, v in verdict.config.items()}
        if advice:
            out.append("config lines to use:")
            out += ["  upstreams:", f"    {self.upstream}:"] + [f"      {k}: {v}" for k, v in advice.items()]
        return out


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = await call()
    return out, time.perf_counter() - t0


async def check_continuation(sample, exact: bool) -> Verdict:
    """The deterministic mid-number probe through the sampler's own continuation path."""
    if not exact:
        return Verdict("continuation", False, "none: only whole answers (guided Best-of-N, bon-approx)")
    out, seconds = await timed(lambda: continuation.probe_once(sample))
    return _continuation_verdict("continuation", out, seconds)


def _continuation_verdict(name: str, out: continuation.Outcome, seconds: float | None) -> Verdict:
    detail = f"{'exact: ' if out.ok else 'not continued: '}{out.detail}; probe cost {out.cost()}"
    return Verdict(name, out.ok, detail, seconds, {} if out.ok else {"mode": "chat-only  # guided Best-of-N"})


async def check_styles(s: ChatContinueSampler) -> list[Verdict]:
    """Every way of marking the partial answer, each probed; the first that continues goes in the config."""
    verdicts = []
    for style in STYLES:
        out, seconds = await timed(lambda style=style: s.probe_style(style))
        v = _continuation_verdict(f"continuation:{style}", out, seconds)
        v.config = {}
        verdicts.append(v)
    works = [st for st, v in zip(STYLES, verdicts) if v.ok]
    s.style = works[0] if works else s.styles[0]  # the later probes (stop, usage) go the way that works
    s.repeats_prefix = bool(works) and "repeated the partial answer" in verdicts[STYLES.index(works[0])].detail
    if works:
        verdicts[STYLES.index(works[0])].config = {"continuation": f"{works[0]}  # continues exactly: "
                                                                   f"{', '.join(works)}"}
    else:
        verdicts[-1].config = {"mode": "chat-only  # no style continues: guided Best-of-N"}
    return verdicts


async def check_openai(s: OpenAISampler) -> Report:
    cfg = s.cfg
    report = Report(s.name, f"openai {s.draw_mode}, model {cfg.model} at {cfg.base_url or 'api.openai.com'}")
    reach = await _reachable(s)
    report.verdicts.append(reach)
    if reach.fatal:
        report.blocking = reach.detail
        return report
    report.verdicts.append(await _n(s))
    if isinstance(s, ChatContinueSampler):
        conts = await check_styles(s)
    else:
        conts = [await check_continuation(s._sample, s.draw_mode.continues)]
    report.verdicts += conts
    stop, usage = await _stop_and_usage(s)
    report.verdicts += [stop, usage, await _seed(s)]
    if getattr(s, "tool_api", False):  # tools and structured output (providers/probes_tools.py)
        report.verdicts += await probes_tools.tool_verdicts(s, Verdict)
    if not any(v.ok for v in conts):
        report.blocking = ("chat-only upstreams cannot continue a partial answer" if s.draw_mode is DrawMode.CHAT_ONLY
                           else f"it does not continue a partial answer ({'; '.join(v.detail for v in conts)})")
    return report


async def _reachable(s: OpenAISampler) -> Verdict:
    try:
        page, seconds = await timed(lambda: s.client.models.list())
    except sdk.AuthenticationError:
        return Verdict("reachable", False, "the API key was refused (401)", fatal=True)
    except sdk.NotFoundError:
        return Verdict("reachable", None, "answers, but has no GET /v1/models (model not checked)")
    except sdk.APIConnectionError as e:  # timeouts included
        return Verdict("reachable", False, f"cannot connect to {s.cfg.base_url}: {type(e).__name__}", fatal=True)
    ids = [m.id for m in page.data]
    key = "key accepted, " if s._secret else "answers (no key configured), "
    if s.cfg.model in ids:
        return Verdict("reachable", True, f"{key}model {s.cfg.model!r} listed", seconds)
    return Verdict("reachable", False, f"{key}but model {s.cfg.model!r} is not listed (listed: "
                   f"{', '.join(ids[:5])})", seconds, {"model": ids[0]} if ids else {})


def _raw(s: OpenAISampler, prefix: str, n: int, temperature: float, stop: list[str] | None = None,
         seed: int | None = None, max_tokens: int = 6):
    request = SampleRequest(COUNT_PROMPT, [Continuation(prefix, max_tokens)] * n, temperature=temperature)
    ctx = s.context(request)
    ctx.api_stops = stop or []  # only the probe's own stop string
    call = Call(list(range(n)), prefix, max_tokens, seed)
    return lambda: s._request(ctx, call)


async def _n(s: OpenAISampler) -> Verdict:
    drawn, seconds = await timed(_raw(s, "", 3, 1.0))
    got = len(drawn.texts)
    if got == 3:
        return Verdict("n", True, "3 of 3 choices for n=3", seconds)
    return Verdict("n", False, f"{got} of 3 choices for n=3: the proxy draws the rest as parallel calls",
                   seconds, {"max_n": f"{got}  # n beyond this is ignored"})


async def _stop_and_usage(s: OpenAISampler) -> tuple[Verdict, Verdict]:
    if s.draw_mode is DrawMode.CHAT_ONLY:
        drawn, seconds = await timed(_raw(s, "", 1, 0.0, [STOP], max_tokens=40))
        return Verdict("stop", None, "not probed for chat-only (no continuation to count on)"), _usage(
            drawn, seconds)
    drawn, seconds = await timed(_raw(s, STOP_PREFIX, 1, 0.0, [STOP], max_tokens=12))
    text = drawn.texts[0]
    if STOP in text:
        at = text.index(STOP) + len(STOP)
        what = ("echoed: the stop string stays in the text" if at == len(text) else
                "ignored: the text runs past it")
        stop = Verdict("stop", False, f"{what} ({text!r}); the proxy cuts it itself", seconds)
    elif text.startswith(", 6"):
        stop = Verdict("stop", True, f"honoured: wrote {text!r} for stop {STOP!r}", seconds)
    else:
        stop = Verdict("stop", None, f"could not tell: the count was not continued ({text!r})", seconds)
    return stop, _usage(drawn, seconds)


def _usage(drawn, seconds: float) -> Verdict:
    if drawn.prompt_tokens is None or drawn.completion_tokens is None:
        return Verdict("usage", False, "not reported: the proxy estimates token counts with tiktoken", seconds)
    return Verdict("usage", True, f"reported ({drawn.prompt_tokens} prompt, {drawn.completion_tokens} "
                   "completion tokens)", seconds)


async def _seed(s: OpenAISampler) -> Verdict:
    a, t1 = await timed(_raw(s, "", 1, 1.0, seed=1234, max_tokens=8))
    b, t2 = await timed(_raw(s, "", 1, 1.0, seed=1234, max_tokens=8))
    if a.texts[0] == b.texts[0]:
        return Verdict("seed", True, "honoured: the same seed drew the same text twice", (t1 + t2) / 2)
    return Verdict("seed", False, "ignored: the same seed drew different texts (seeded requests will not "
                   "repeat)", (t1 + t2) / 2)


async def check_sampler(sampler) -> Report:
    """Any other upstream (in process, Anthropic): reachability and the continuation probe."""
    from w2s.providers.anthropic import AnthropicSampler

    report = Report(sampler.name, type(sampler).__name__)
    if isinstance(sampler, AnthropicSampler):
        report.describe = f"anthropic, model {sampler.cfg.model}"
        try:
            _, seconds = await timed(sampler.probe)
            report.verdicts.append(Verdict("reachable", True, "key accepted (GET /v1/models)", seconds))
        except Exception as e:
            report.verdicts.append(Verdict("reachable", False, f"{type(e).__name__}"))
            report.blocking = "unreachable"
            return report
        report.verdicts.append(Verdict("n", None, "no n in the API: K draws are K parallel calls"))
    else:
        report.verdicts.append(Verdict("reachable", True, "in process"))
    cont = await check_continuation(sampler.sample, sampler.exact_continuation)
    report.verdicts.append(cont)
    if getattr(sampler, "tool_api", False):
        report.verdicts += await probes_tools.tool_verdicts(sampler, Verdict)
    if not cont.ok:
        report.blocking = cont.detail
    return report


async def check(sampler) -> Report:
    if isinstance(sampler, OpenAISampler):
        return await check_openai(sampler)
    return await check_sampler(sampler)

