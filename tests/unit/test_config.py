"""config.yaml as pydantic models: each provider, OpenAI mode and guide kind owns its keys, and a
bad file is one line naming the place and what is allowed there."""
from __future__ import annotations

import pytest

from w2s.providers.registry import SAMPLERS, sampler_class
from w2s.proxy.core.config import (
    AnthropicUpstream,
    GuidePairConfig,
    LocalUpstream,
    OpenAIChatContinue,
    OpenAIChatOnly,
    OpenAICompletions,
)
from w2s.proxy.core.config_load import load_config, parse_config, upstream_config
from w2s.proxy.core.errors import ConfigError
from w2s.proxy.core.modes import DrawMode, SearchMode, decide_mode
from w2s.proxy.core.types import SearchParams


def base(**sections) -> dict:
    data = {"models": {"m": {"source": "/x"}}, "upstreams": {"u": {"provider": "local", "model": "m"}},
            "guides": {"g": {"tuned": {"model": "m"}, "untuned": {"model": "m"}}},
            "routes": {"r": {"upstream": "u", "guide": "g"}}}
    data.update(sections)
    return data


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return str(e.value)


@pytest.mark.parametrize("up, cls, mode", [
    ({"provider": "local", "model": "m"}, LocalUpstream, DrawMode.LOCAL),
    ({"provider": "openai", "model": "x"}, OpenAICompletions, DrawMode.COMPLETIONS),  # the default mode
    ({"provider": "openai", "model": "x", "mode": "chat-continue"}, OpenAIChatContinue, DrawMode.CHAT_CONTINUE),
    ({"provider": "openai", "model": "x", "mode": "chat-only"}, OpenAIChatOnly, DrawMode.CHAT_ONLY),
    ({"provider": "anthropic", "model": "claude"}, AnthropicUpstream, DrawMode.ANTHROPIC_PREFILL),
])
def test_each_provider_and_mode_is_its_own_model(up, cls, mode):
    cfg = parse_config(base(upstreams={"u": up}))
    assert type(cfg.upstreams["u"]) is cls and cfg.upstreams["u"].draw_mode is mode


def test_every_way_of_drawing_has_one_sampler_class():
    assert set(SAMPLERS) == set(DrawMode)
    classes = {m: sampler_class(m) for m in DrawMode}
    assert len(set(classes.values())) == len(DrawMode)
    assert all(c.draw_mode is m for m, c in classes.items())


def test_a_key_of_another_provider_is_an_error_naming_its_owner():
    msg = error(base(upstreams={"u": {"provider": "anthropic", "model": "claude", "max_n": 2}}))
    assert msg.startswith("upstreams.u.max_n: not an option of provider anthropic; it belongs to provider openai")
    assert "known here: " in msg and "prompt_cache" in msg and "max_n," not in msg


def test_a_key_of_another_openai_mode_is_an_error_naming_that_mode():
    msg = error(base(upstreams={"u": {"provider": "openai", "mode": "chat-continue", "model": "x",
                                      "chat_template": "{{ messages }}"}}))
    assert msg.startswith("upstreams.u.chat_template: not an option of provider openai, mode chat-continue; "
                          "it belongs to provider openai, mode completions")
    msg = error(base(upstreams={"u": {"provider": "openai", "mode": "chat-only", "model": "x",
                                      "on_no_continuation": "fail"}}))
    assert "mode chat-only; it belongs to provider openai, mode completions and provider openai, mode " \
           "chat-continue" in msg


@pytest.mark.parametrize("data, want", [
    (base(upstreams={"u": {"provider": "azure", "model": "x"}}),
     "upstreams.u.provider: unknown value 'azure' (one of local, openai, anthropic)"),
    (base(upstreams={"u": {"model": "x"}}), "upstreams.u: missing required key provider"),
    (base(upstreams={"u": {"provider": "openai", "mode": "chat", "model": "x"}}),
     "upstreams.u.mode: unknown value 'chat' (one of completions, chat-continue, chat-only"),
    (base(guides={"g": {"kind": "rm", "tuned": {"model": "m"}, "untuned": {"model": "m"}}}),
     "guides.g.kind: unknown value 'rm' (one of pair, mixture, reward_model)"),
    (base(guides={"g": {"tuned": {"model": "m", "sys": "x"}, "untuned": {"model": "m"}}}),
     "guides.g.tuned.sys: unknown key (known here: model, system, template)"),
    (base(guides={"g": {"untuned": {"model": "m"}}}), "guides.g.tuned: missing required key"),
    (base(routes={"r": {"upstream": "u", "guide": "g", "search": {"ww": 3}}}), "routes.r.search.ww: unknown key"),
    (base(routes={"r": {"upstream": "u", "guide": "g", "search": {"w": "3"}}}),
     "routes.r.search.w: expected an integer, got '3'"),
    (base(upstreams={"u": {"provider": "local", "model": "m", "max_batch_rows": 0}}),
     "upstreams.u.max_batch_rows: must be 1 or more"),
    (base(upstreams={"u": {"provider": "openai", "model": "x", "on_no_continuation": "retry"}}),
     "upstreams.u.on_no_continuation: must be one of bon-approx or fail, got 'retry'"),
    (base(upstreams={"u": {"provider": "local", "model": "nope"}}), "upstreams.u.model: 'nope' is not in models:"),
    (base(routes={"r": {"upstream": "v", "guide": "g"}}), "routes.r.upstream: 'v' is not in upstreams:"),
    (base(ui={"recent_searches": -1}), "ui.recent_searches: must be 0 or more"),
    (base(torch_threads=0), "torch_threads: must be 1 or more"),
    (base(path="elsewhere"), "path: unknown key"),
    (base(upstreams={"u": {"provider": "openai", "model": "x", "prices": {"input": 1.0, "bogus": 2}}}),
     "upstreams.u.prices.bogus: unknown key (known here: cache_write, cached_input, input, output)"),
])
def test_bad_configs_name_the_place_and_what_is_allowed(data, want):
    assert error(data).startswith(want)


def test_the_shipped_config_and_its_shorthands_load():
    cfg = load_config()
    assert cfg.path and cfg.default_route == "w2s-default" and isinstance(cfg.guides["positive-critic"],
                                                                            GuidePairConfig)
    cfg = parse_config(base(routes={"r": {"upstream": "u", "guide": "g", "search": {"stop": "\n", "l": None}}},
                            upstreams={"u": {"provider": "local", "model": "m", "stop": "END"}}))
    assert cfg.routes["r"].search.stop == ("\n",) and cfg.routes["r"].search.l is None  # `stop: "x"`: one
    assert cfg.upstreams["u"].stop == ["END"]


def test_upstream_config_validates_one_section_like_the_file():
    up = upstream_config({"provider": "openai", "mode": "chat-only", "model": "gpt", "api_key": "os.environ/K"})
    assert isinstance(up, OpenAIChatOnly) and "os.environ/K" not in repr(up)  # the key reference is not shown
    with pytest.raises(ConfigError, match=r"^upstreams.up.max_batch_rows: not an option of provider openai"):
        upstream_config({"provider": "openai", "model": "gpt", "max_batch_rows": 2}, "up")


@pytest.mark.parametrize("w, k, l, exact, passthrough, mode", [
    (2, 2, 10, True, False, SearchMode.CBS), (1, 4, None, True, False, SearchMode.BON),
    (2, 2, 10, False, False, SearchMode.BON_APPROX), (1, 1, 10, False, False, SearchMode.SAMPLE),
    (2, 2, 10, True, True, SearchMode.PASSTHROUGH),
])
def test_the_search_mode_is_decided_in_one_place(w, k, l, exact, passthrough, mode):
    assert decide_mode(SearchParams(w=w, k=k, l=l), exact=exact, passthrough=passthrough) is mode
