"""Every tier: nothing comes from a hub at test time, and the shared fixtures.

The tiers are folders: unit/ (no model weights, no subprocess, no external server:
what a bare `python -m pytest` runs), integration/ (the real small models, real local
servers, the CLI as a subprocess) and system/ (Ray, HAProxy, Chromium, wheel builds,
training, model-cache processes). Helpers live in tests/support/; no test module
imports another.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub at test time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.support.servers",  # server_thread, fresh_servers: proxy servers over scripted parts
    "tests.support.models",  # config, engine, live, auth_live: the session's real models, loaded once
]
