"""The engine: config -> loaded models, samplers, guide scorers -> searches.

Shared by the CLI, the server and batch runs. Everything heavy is created in
`start()` and released in `aclose()`; no module globals.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from providers.registry import make_sampler
from proxy.config import Config, RouteConfig, search_params_with
from proxy.search import OnRound, search
from proxy.types import Prompt, SearchParams, SearchResult
from scorers.batcher import RowBatcher
from scorers.loading import ModelPool
from scorers.pair import GuidePair

log = logging.getLogger("w2s.engine")


@dataclass
class RouteInfo:
    name: str
    config: RouteConfig
    mode: str  # passthrough | cbs | bon | bon-approx | sample
    exact: bool  # upstream continues partial answers exactly


class Engine:
    def __init__(self, config: Config):
        self.config = config
        # Models some route scores with: `dtype: auto` keeps them in float32 (scorers/loading.py).
        guides = {r.guide for r in config.routes.values() if r.guide and not r.passthrough}
        guide_models = frozenset(getattr(config.guides[g], side).model for g in guides for side in ("tuned", "untuned"))
        self.pool = ModelPool(config.models, guide_models, config.torch_threads)
        self.batcher = RowBatcher(self.pool, config.scorer)
        self.samplers: dict = {}
        self.guides: dict[str, GuidePair] = {}
        self.ready = False

    async def start(self) -> None:
        """Load every model the routes use (off the event loop), once."""
        cfg = self.config
        used_up = {r.upstream for r in cfg.routes.values()}
        used_guides = {r.guide for r in cfg.routes.values() if r.guide and not r.passthrough}
        for name in sorted(used_up):
            self.samplers[name] = make_sampler(name, cfg.upstreams[name], self.pool)
        for name in sorted(used_guides):
            self.guides[name] = GuidePair(name, cfg.guides[name], self.pool, self.batcher)
        needed = {m for s in self.samplers.values() for m in getattr(s, "model_names", ())}
        needed |= {m for g in self.guides.values() for m in g.model_names}
        loop = asyncio.get_running_loop()
        for m in sorted(needed):
            await loop.run_in_executor(self.pool.executor, self.pool.get, m)
        for g in self.guides.values():
            g.bind()
        self.batcher.start()
        self.ready = True

    def routes(self) -> list[RouteInfo]:
        return [self.route_info(n) for n in self.config.routes]

    def route_info(self, name: str | None) -> RouteInfo:
        name, rc = self.config.route(name)
        sampler = self.samplers.get(rc.upstream)
        exact = bool(getattr(sampler, "exact_continuation", True))
        if rc.passthrough:
            mode = "passthrough"
        else:
            from proxy.search import mode_of

            mode = mode_of(rc.search, exact)
        return RouteInfo(name, rc, mode, exact)

    def params_for(self, route: str | None, overrides: dict | None = None) -> SearchParams:
        _, rc = self.config.route(route)
        params = search_params_with(rc.search, overrides or {})
        if rc.passthrough:
            # No guide: one plain draw per requested answer.
            params = replace(params, w=max(1, params.n), k=1, l=None)
        return params

    async def run(
        self,
        route: str | None,
        prompt: Prompt,
        overrides: dict | None = None,
        on_round: OnRound | None = None,
        params: SearchParams | None = None,
    ) -> SearchResult:
        name, rc = self.config.route(route)
        if params is None:
            params = self.params_for(name, overrides)
        sampler = self.samplers[rc.upstream]
        if rc.passthrough:
            # n independent draws, duplicates kept (what a client of `n` expects).
            result = await search(prompt, sampler, None, params, on_round, distinct=False)
            result.mode = "passthrough"
            return result
        session = self.guides[rc.guide].session(prompt)
        try:
            return await search(prompt, sampler, session, params, on_round)
        finally:
            session.close()

    async def aclose(self) -> None:
        self.ready = False
        await self.batcher.aclose()
        for s in self.samplers.values():
            await s.aclose()
        self.pool.close()
