"""Long inputs (#29): a prompt that cannot fit a model's context is a 400 before admission, on every
API; an upstream's own context-length error becomes that 400; a guide cuts the prompt to its window.

Small `context_tokens` reach the limits at once. Counting here is words (a scripted upstream) or
tiktoken (a remote one); the real tokenizers are in tests/integration/test_long_inputs.py.
"""
from __future__ import annotations

import json

import pytest

from tests.support.fault_upstream import Fault, FaultUpstream
from tests.support.scripted import ScriptedSampler, ScriptedScorer, fake_config, scripted_engine
from w2s.providers.health import HealthGuard
from w2s.providers.openai import OpenAISampler
from w2s.providers.retry import RetryPolicy
from w2s.proxy.batch.input import BatchItem
from w2s.proxy.batch.local import EngineRunner
from w2s.proxy.core import context
from w2s.proxy.core.config_load import parse_config, upstream_config
from w2s.proxy.core.context import TokenCount
from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.health import UpstreamHealth
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest

WINDOW = 64  # the scripted upstream's context, in words
MAX_TOKENS = 8  # fake_config's routes


def words(n: int) -> str:
    return " ".join(["word"] * n)


class Windowed(ScriptedSampler):
    """A scripted upstream with a context of WINDOW tokens, a token being a word."""

    context_tokens = WINDOW

    async def count_prompt(self, prompt: Prompt, bound: int | None) -> TokenCount:
        return context.count(context.prompt_chars(prompt), lambda t: len(t.split()), bound)


# -- counting ------------------------------------------------------------------------------

def test_a_short_prompt_is_counted_exactly():
    assert context.count(words(100), lambda t: len(t.split()), bound=10) == TokenCount(100, True)


def test_a_long_prompt_far_from_the_limit_is_estimated_and_near_it_counted_exactly():
    calls = []

    def encode_len(t):
        calls.append(len(t))
        return len(t.split())

    text = words(20_000)  # 100k characters
    far = context.count(text, encode_len, bound=1000)
    assert not far.exact and abs(far.tokens - 20_000) < 200
    assert max(calls) <= context.SAMPLE_CHARS  # only slices were tokenized
    near = context.count(text, encode_len, bound=19_500)
    assert near == TokenCount(20_000, True)


def test_the_boundary_prompt_plus_max_tokens_equal_to_the_window_fits_one_more_does_not():
    context.check(TokenCount(WINDOW - MAX_TOKENS, True), MAX_TOKENS, WINDOW, "upstream 'up'")
    with pytest.raises(ContextLengthExceeded) as e:
        context.check(TokenCount(WINDOW - MAX_TOKENS + 1, True), MAX_TOKENS, WINDOW, "upstream 'up'")
    assert e.value.status == 400 and e.value.code == "context_length_exceeded"
    assert f"{WINDOW - MAX_TOKENS + 1} tokens" in e.value.message and f"{WINDOW}-token" in e.value.message


def test_max_prompt_tokens_bounds_the_prompt_and_names_where_it_is_set():
    limit = (20, "routes.r.limits.max_prompt_tokens")
    context.check(TokenCount(20, True), MAX_TOKENS, None, "upstream 'up'", limit)
    with pytest.raises(ContextLengthExceeded, match="routes.r.limits.max_prompt_tokens = 20"):
        context.check(TokenCount(21, True), MAX_TOKENS, None, "upstream 'up'", limit)


def test_cut_left_keeps_the_system_prompt_the_prefill_and_every_turn():
    p = Prompt.chat([{"role": "system", "content": "S"}, {"role": "user", "content": "abcdef"},
                     {"role": "assistant", "content": "gh"}, {"role": "user", "content": "ijk"},
                     {"role": "assistant", "content": "pre"}])
    cut = context.cut_left(p, 9)
    assert [m["content"] for m in cut.messages] == ["S", "", "", "jk"] and cut.prefill == "pre"
    assert context.conversation_chars(p) == 11


# -- every API, before admission -----------------------------------------------------------

@pytest.fixture
def windowed(fresh_servers, server_thread):
    cfg = fake_config(limits={"max_prompt_tokens": 40})
    up = Windowed("up")
    engine = scripted_engine(cfg, up, ScriptedScorer("g"))
    server_thread.run(engine.start())
    return fresh_servers(engine.config, engine), up


BODIES = {
    "/v1/chat/completions": lambda text, **kw: {"model": "fake-cbs", "messages": [{"role": "user", "content": text}],
                                                **kw},
    "/v1/completions": lambda text, **kw: {"model": "fake-cbs", "prompt": text, **kw},
    "/v1/messages": lambda text, **kw: {"model": "fake-cbs", "max_tokens": MAX_TOKENS,
                                        "messages": [{"role": "user", "content": text}], **kw},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", list(BODIES))
def test_an_over_long_prompt_is_a_400_before_admission_on_every_api(windowed, path, stream):
    srv, up = windowed
    status, _, body = srv.post(path, BODIES[path](words(WINDOW), stream=stream))
    assert status == 400, body
    err = json.loads(body)
    if path == "/v1/messages":
        assert err["error"]["type"] == "invalid_request_error"
    else:
        assert err["error"]["code"] == "context_length_exceeded"
    assert "over the limit server.limits.max_prompt_tokens = 40" in err["error"]["message"]
    assert up.calls == 0  # nothing was drawn: refused before admission
    status, _, body = srv.post(path, BODIES[path](words(30), stream=stream))
    assert status == 200, body


def test_the_window_is_checked_beside_max_prompt_tokens(fresh_servers, server_thread):
    engine = scripted_engine(fake_config(), Windowed("up"), ScriptedScorer("g"))
    server_thread.run(engine.start())
    srv = fresh_servers(engine.config, engine)
    fits, over = WINDOW - MAX_TOKENS, WINDOW - MAX_TOKENS + 1
    assert srv.post("/v1/completions", BODIES["/v1/completions"](words(fits)))[0] == 200
    status, _, body = srv.post("/v1/completions", BODIES["/v1/completions"](words(over)))
    assert status == 400 and f"{WINDOW}-token context" in json.loads(body)["error"]["message"]


async def test_a_batch_item_over_the_window_is_that_items_400_line():
    engine = scripted_engine(fake_config(), Windowed("up"), ScriptedScorer("g"))
    await engine.start()
    try:
        runner = EngineRunner(engine)
        item = BatchItem("a", "/v1/chat/completions", BODIES["/v1/chat/completions"](words(WINDOW)), 1)
        out = await runner.execute(item)
        assert out.status == 400 and out.body["error"]["code"] == "context_length_exceeded"
        ok = await runner.execute(BatchItem("b", "/v1/completions", BODIES["/v1/completions"](words(10)), 2))
        assert ok.status == 200
    finally:
        await engine.aclose()


# -- an upstream's own context error --------------------------------------------------------

@pytest.fixture
async def fault():
    f = await FaultUpstream().start()
    yield f
    await f.close()


def remote(fault: FaultUpstream, **kw) -> OpenAISampler:
    cfg = upstream_config(dict(provider="openai", model="m", base_url=fault.base_url + "/v1", timeout=2.0, **kw))
    return OpenAISampler.from_config("up", cfg, None, retry_policy=RetryPolicy(max_retries=3, backoff_base=0.01))


@pytest.mark.parametrize("style", ["openai", "vllm", "anthropic"])
async def test_an_upstream_context_error_is_a_400_not_retried_not_a_failure_and_its_limit_learned(fault, style):
    sampler = remote(fault, allowed_fails=1)
    guard = HealthGuard(sampler, UpstreamHealth("up", allowed_fails=1, cooldown_seconds=30))
    fault.push(Fault.context_too_long(style, limit=4096, asked=5000))
    with pytest.raises(ContextLengthExceeded) as e:
        await guard.sample(SampleRequest(Prompt.raw("hi"), [Continuation("", 4)]))
    assert e.value.status == 400 and e.value.code == "context_length_exceeded" and e.value.limit == 4096
    assert fault.count() == 1  # never retried
    assert not guard.health.cooling_down and guard.health.consecutive_failures == 0
    assert guard.context_tokens == 4096
    await sampler.aclose()


async def test_a_learned_context_refuses_the_next_long_prompt_before_it_reaches_the_upstream(fault):
    cfg = parse_config({
        "upstreams": {"up": {"provider": "openai", "mode": "completions", "model": "m",
                             "base_url": fault.base_url + "/v1", "max_retries": 0}},
        "models": {"m": {"source": "/nonexistent"}},
        "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
        "routes": {"r": {"upstream": "up", "guide": "g", "search": {"w": 1, "k": 1, "l": 4, "max_tokens": 8}}},
    })
    from w2s.proxy.engine import Engine

    engine = Engine(cfg, guides={"g": ScriptedScorer("g")})
    await engine.start()
    try:
        plan, prompt = engine.plan("r"), Prompt.raw(words(300))
        await engine.check_context(plan, prompt)  # the context is not known yet
        fault.push(Fault.context_too_long("vllm", limit=100, asked=310))
        with pytest.raises(ContextLengthExceeded):
            await engine.run(plan, prompt)
        sent = fault.count()
        with pytest.raises(ContextLengthExceeded, match="100-token context"):
            await engine.check_context(plan, prompt)
        assert fault.count() == sent
        await engine.check_context(plan, Prompt.raw(words(20)))  # a short one still goes
    finally:
        await engine.aclose()


def test_context_tokens_in_config_is_the_upstreams_context(fault):
    assert remote(fault, context_tokens=2048).context_tokens == 2048


async def test_a_remote_prompt_far_over_its_bound_is_estimated_from_slices(fault):
    sampler = remote(fault)
    n = await sampler.count_prompt(Prompt.raw(words(50_000)), bound=1000)
    assert not n.exact and 45_000 < n.tokens < 55_000
    await sampler.aclose()


def test_a_remote_context_error_is_the_clients_400_over_http(fresh_servers, server_thread):
    fault = server_thread.run(FaultUpstream().start())
    try:
        cfg = parse_config({
            "upstreams": {"up": {"provider": "openai", "mode": "completions", "model": "m",
                                 "base_url": fault.base_url + "/v1", "max_retries": 2}},
            "models": {"m": {"source": "/nonexistent"}},
            "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
            "routes": {"r": {"upstream": "up", "guide": "g", "search": {"w": 1, "k": 1, "l": 4, "max_tokens": 8}}},
        })
        from w2s.proxy.engine import Engine

        engine = Engine(cfg, guides={"g": ScriptedScorer("g")})
        server_thread.run(engine.start())
        srv = fresh_servers(cfg, engine)
        fault.push(Fault.context_too_long("openai", limit=100, asked=310))
        status, headers, body = srv.post("/v1/completions", {"model": "r", "prompt": words(300)})
        err = json.loads(body)["error"]
        assert status == 400 and err["code"] == "context_length_exceeded" and headers["x-should-retry"] == "false"
        assert "maximum context length is 100" in err["message"] and fault.count() == 1
        status, _, body = srv.post("/v1/messages", {"model": "r", "max_tokens": 8,
                                                    "messages": [{"role": "user", "content": words(300)}]})
        assert status == 400 and "100-token context" in json.loads(body)["error"]["message"]
        assert fault.count() == 1  # learned: refused before admission, the upstream never asked again
        assert engine.health()["up"]["consecutive_failures"] == 0
    finally:
        server_thread.run(fault.close())
