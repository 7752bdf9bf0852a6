"""The engine: config -> loaded models, samplers, guides -> searches.

Shared by the CLI, the server and batch runs. Everything heavy is created in
`start()` and released in `aclose()`; no module globals.

A request is resolved once, by `plan()`: its route, the mode it plans to run
and its validated SearchParams travel together as a `Plan` to `run()`. The
result says the mode actually run (a search may fall back mid-way).

Samplers and guides can be injected by name (tests and benches run a real
Engine over scripted parts); every other part is built from config.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from w2s.providers.generate_batcher import GenerateStats
from w2s.providers.health import HealthGuard
from w2s.providers.registry import make_sampler
from w2s.proxy.core import context, guide_weights, limits
from w2s.proxy.core.config import Config, RouteConfig
from w2s.proxy.core.config_load import search_params_with
from w2s.proxy.core.cost import Prices
from w2s.proxy.core.errors import UnsupportedField
from w2s.proxy.core.health import UpstreamHealth
from w2s.proxy.core.interfaces import Sampler, Scorer
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.search import OnRound, search
from w2s.proxy.core.types import Prompt, SearchParams, SearchResult
from w2s.proxy.runtime.pool import ModelPool
from w2s.scorers.batcher import BatcherStats, RowBatcher
from w2s.scorers.mixture import GuideMixture
from w2s.scorers.pair import GuidePair
from w2s.scorers.registry import make_guide

log = logging.getLogger("w2s.engine")


@dataclass(frozen=True)
class RouteInfo:
    name: str
    config: RouteConfig
    mode: SearchMode  # with the route's own search settings
    exact: bool  # upstream continues partial answers exactly


@dataclass(frozen=True)
class Plan:
    """One request, resolved: the route, its validated params and the mode they plan."""

    route: RouteInfo
    params: SearchParams
    mode: SearchMode  # planned; SearchResult.mode is what ran (after any explicit fallback)
    guide_weights: dict[str, float] | None = None  # a mixture guide's weights for this request (checked)

    @property
    def name(self) -> str:
        return self.route.name


class Engine:
    def __init__(self, config: Config, *, samplers: dict[str, Sampler] | None = None,
                 guides: dict[str, Scorer] | None = None):
        self.config = config
        used_guides = {r.guide for r in config.routes.values() if r.guide and not r.passthrough}
        # Models some route scores with: `dtype: auto` keeps them in float32 (proxy/runtime/loading.py).
        guide_models = frozenset(m for g in used_guides - set(guides or {}) for m in config.guides[g].model_names())
        self.pool = ModelPool(config.models, guide_models, config.torch_threads)
        self.batcher = RowBatcher(self.pool, config.scorer)
        self.samplers: dict[str, Sampler] = {}  # the providers themselves (their stats, their settings)
        self.upstreams: dict[str, HealthGuard] = {}  # what searches draw from: each provider behind its health
        for name in sorted({r.upstream for r in config.routes.values()}):
            self._add_upstream(name, (samplers or {}).get(name))
        self.guides: dict[str, Scorer] = {
            name: (guides or {}).get(name) or make_guide(name, config.guides[name], self.pool, self.batcher)
            for name in sorted(used_guides)}
        self.ready = False

    def _add_upstream(self, name: str, given: Sampler | None) -> None:
        up = self.config.upstreams[name]
        self.samplers[name] = given or make_sampler(name, up, self.pool)
        health = UpstreamHealth(name, up.allowed_fails, up.cooldown_seconds)
        self.upstreams[name] = HealthGuard(self.samplers[name], health)

    async def start(self) -> None:
        """Load every model the routes use (off the event loop, once), then start the parts."""
        needed = {m for s in self.samplers.values() for m in s.model_names}
        needed |= {m for g in self.guides.values() for m in g.model_names}
        for m in sorted(needed):
            await self.pool.run(self.pool.get, m)
        for part in [*self.upstreams.values(), *self.guides.values()]:
            await part.start()
        self.batcher.start()
        self.ready = True

    # --- resolving a request ------------------------------------------------------

    def routes(self) -> list[RouteInfo]:
        return [self.route_info(n) for n in self.config.routes]

    def route_info(self, name: str | None) -> RouteInfo:
        """The route `name` (None: the default route); NotFound names the known ones."""
        name, rc = self.config.route(name)
        exact = self.samplers[rc.upstream].exact_continuation
        return RouteInfo(name, rc, decide_mode(rc.search, exact=exact, passthrough=rc.passthrough), exact)

    def plan(self, route: str | RouteInfo | None, overrides: dict | None = None) -> Plan:
        """Resolve a request: 404 for an unknown route, 400 for a bad override or one over the limits."""
        info = route if isinstance(route, RouteInfo) else self.route_info(route)
        overrides = dict(overrides or {})
        weights = self._guide_weights(info, overrides.pop("guide_weights")) if "guide_weights" in overrides else None
        params = search_params_with(info.config.search, overrides)
        if info.config.passthrough:
            # No guide: one plain draw per requested answer.
            params = replace(params, w=max(1, params.n), k=1, l=None)
        limits.check(params, self.config.server.limits, info.config.limits, info.name)
        self._check_money(info, params)
        return Plan(info, params, decide_mode(params, exact=info.exact, passthrough=info.config.passthrough), weights)

    def _guide_weights(self, info: RouteInfo, asked) -> dict[str, float]:
        """`"w2s": {"guide_weights": {...}}` for the route's mixture guide, checked (400 naming the key)."""
        rc = info.config
        cfg = self.config.guides.get(rc.guide) if rc.guide and not rc.passthrough else None
        defaults = getattr(cfg, "weights", {})
        return guide_weights.resolve(asked, defaults, rc.guide if cfg is not None else None,
                                     self.config.server.limits, rc.limits, info.name)

    def plan_prompt(self, route: str | RouteInfo | None, overrides: dict | None, prompt: Prompt) -> Plan:
        """`plan` for this prompt: tools that may be called, or an output format, need whole answers
        (proxy/core/tools.py), so they decide the mode too; a route with `tools: passthrough` skips the
        search for them. 400 when the upstream has no tool API."""
        plan = self.plan(route, overrides)
        if not prompt.whole_answers:
            return plan
        info, params = plan.route, plan.params
        if prompt.tools is not None and prompt.tools.callable:
            self._check_tool_api(info)
        passthrough = info.config.passthrough or (info.config.tools == "passthrough" and prompt.tools is not None)
        params = replace(params, w=max(1, params.n), k=1, l=None) if passthrough else replace(params, l=None)
        mode = decide_mode(params, exact=info.exact, passthrough=passthrough, whole=True)
        return replace(plan, params=params, mode=mode)

    def _check_tool_api(self, info: RouteInfo) -> None:
        """A request with tools to an upstream with no tool API (completions, local) is a 400 naming the
        route and the routes that can take it: never silently dropped."""
        name = info.config.upstream
        if getattr(self.samplers[name], "tool_api", False):
            return
        able = [r for r, rc in self.config.routes.items() if getattr(self.samplers[rc.upstream], "tool_api", False)]
        kind = getattr(self.samplers[name], "draw_mode", "local")
        raise UnsupportedField(
            f"route {info.name!r}: its upstream {name!r} ({kind}) has no tool API, so a request with tools cannot "
            f"be honoured there. Routes whose upstream takes tools: {', '.join(able) or 'none configured'} "
            "(an openai upstream in mode chat-continue, chat-only or responses, or anthropic); or send "
            "tool_choice: none", param="tools", code="tools_not_supported")

    # --- running it -----------------------------------------------------------------

    def check_upstream(self, plan: Plan) -> None:
        """UpstreamUnavailable (503) while the plan's upstream cools down: fail before admission."""
        self.upstreams[plan.route.config.upstream].health.check()

    async def check_context(self, plan: Plan, prompt: Prompt) -> None:
        """ContextLengthExceeded (400) when the prompt plus max_tokens cannot fit the upstream's context,
        or the prompt is over max_prompt_tokens: counted (off the event loop) before admission.
        Guides fit the prompt to their own window (scorers/pair.py); proxy/core/context.py."""
        rc, max_tokens = plan.route.config, plan.params.max_tokens
        sampler = self.upstreams[rc.upstream]
        window = sampler.context_tokens
        bounded = limits.prompt_limit(self.config.server.limits, rc.limits, plan.name)
        if window is None and bounded is None:
            return
        n = await sampler.count_prompt(prompt, context.bound_for(max_tokens, window, bounded))
        if n is not None:
            context.check(n, max_tokens, window, f"upstream {rc.upstream!r}", bounded)

    async def run(self, plan: Plan, prompt: Prompt, on_round: OnRound | None = None) -> SearchResult:
        rc = plan.route.config
        sampler = self.upstreams[rc.upstream]
        # Probes what it must before the search plans (e.g. whether it really continues a prefix).
        await sampler.prepare(continuation=plan.mode is SearchMode.CBS)
        if plan.mode is SearchMode.PASSTHROUGH:
            # n independent draws, duplicates kept (what a client of `n` expects).
            result = await search(prompt, sampler, None, plan.params, on_round, mode=plan.mode,
                                    prices=self.prices(plan))
        else:
            session = _session(self.guides[rc.guide], prompt, plan.params.max_tokens, plan.guide_weights)
            try:
                result = await search(prompt, sampler, session, plan.params, on_round, mode=plan.mode,
                                    prices=self.prices(plan))
                result.note(*getattr(session, "notes", ()))  # e.g. the prompt cut to fit the guide's window
            finally:
                session.close()
        result.upstream = {"name": rc.upstream, **sampler.capabilities()}  # what the trace shows of it
        return result

    def prices(self, plan: Plan) -> Prices | None:
        """The plan's upstream's prices (USD per million tokens): cost_usd and max_cost_usd."""
        cfg = self.config.upstreams[plan.route.config.upstream].prices
        return None if cfg is None else cfg.core()

    def _check_money(self, info: RouteInfo, params: SearchParams) -> None:
        """max_cost_usd on an upstream with no prices cannot be kept: a 400 naming the fix."""
        from w2s.proxy.core.errors import InvalidRequest

        up = info.config.upstream
        if params.max_cost_usd is not None and self.config.upstreams[up].prices is None:
            raise InvalidRequest(f"max_cost_usd: upstream {up!r} has no prices (set upstreams.{up}.prices: "
                                 "{input, output} in USD per million tokens)", param="max_cost_usd")

    # --- what the metrics read ---------------------------------------------------------

    def health(self) -> dict[str, dict]:
        """Each upstream's state for /health?detail=1: last success, last error, cooldown."""
        return {name: {**g.health.snapshot(), "capabilities": g.capabilities()} for name, g in self.upstreams.items()}

    @property
    def scorer_stats(self) -> BatcherStats:
        return self.batcher.stats

    def generate_stats(self) -> dict[str, GenerateStats]:
        """Per in-process upstream: its merged generate calls (providers/generate_batcher.py)."""
        return {name: st for name, s in self.samplers.items()
                if (st := getattr(s, "generate_stats", None)) is not None}

    async def aclose(self) -> None:
        self.ready = False
        await self.batcher.aclose()
        for s in self.upstreams.values():
            await s.aclose()
        self.pool.close()


def _session(guide: Scorer, prompt: Prompt, answer_tokens: int, weights: dict[str, float] | None = None):
    """A guide's session; a pair also hears how long answers may get (it fits the prompt to its window),
    a mixture this request's weights too."""
    if isinstance(guide, GuideMixture):
        return guide.session(prompt, answer_tokens=answer_tokens, weights=weights)
    if isinstance(guide, GuidePair):
        return guide.session(prompt, answer_tokens=answer_tokens)
    return guide.session(prompt)
