"""The model pool: every configured model loaded once, and the one model thread.

Samplers (providers/) and guides (scorers/) share it: a model used as both an
upstream and a guide is one set of weights, and all model work runs on one
worker thread, so torch gets every core for each forward pass and the event
loop never blocks.

`models:` entries on the same base (same source, dtype and device) are one set
of weights too: the first use of any of them loads the base once and attaches
every adapter named on it, unmerged (proxy/runtime/adapters.py).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import replace
from typing import Any, Callable

from w2s.proxy.core.config import ModelConfig
from w2s.proxy.core.errors import ModelLoadError
from w2s.proxy.runtime import adapters
from w2s.proxy.runtime.loading import LoadedModel, context_of, load_model


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # intra-op threads (process-wide)


class ModelPool:
    """Every model named in config, loaded once and shared by samplers and guides.

    All model work goes through one worker thread (`run`): torch already uses
    every core for one forward pass, and it keeps the event loop free.
    """

    def __init__(self, configs: dict[str, ModelConfig], guide_models: frozenset[str] = frozenset(),
                 threads: int | None = None):
        self.configs = configs
        self.guide_models = guide_models  # loaded as guides (float32 under dtype auto)
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="w2s-model", initializer=_set_threads, initargs=(threads,))

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            if name not in self._models:
                if name not in self.configs:
                    raise ModelLoadError(f"model {name!r} is not in models:")
                self._load_base(name)
            return self._models[name]

    def sharing_base(self, name: str) -> list[str]:
        """Every models: name on the same base weights as `name` (itself included)."""
        key = _base_key(self.configs[name])
        return [n for n, c in self.configs.items() if _base_key(c) == key]

    def _load_base(self, name: str) -> None:
        """Load `name`'s base once, with every adapter of the names that share it."""
        group = self.sharing_base(name)
        guide = any(n in self.guide_models for n in group)  # one guide among them: float32 under auto
        base = load_model(name, self.configs[name], guide)
        wanted = {n: self.configs[n].adapter for n in group if self.configs[n].adapter}
        model, keys = adapters.attach(base.model, wanted) if wanted else (base.model, {})
        for n in group:
            self._models[n] = replace(base, name=n, model=model, adapter=keys.get(n),
                                      context_tokens=context_of(base.model, self.configs[n].context_tokens))

    @property
    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._models.clear()


def _base_key(cfg: ModelConfig) -> tuple[str, str, str]:
    return (cfg.source, cfg.dtype, cfg.device)
