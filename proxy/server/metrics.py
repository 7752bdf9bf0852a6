"""The proxy's Prometheus metrics, on prometheus_client.

One registry per app (no module globals, so several apps in one process each
count their own). Counters and histograms are updated by the service as
requests and rounds finish; gauges that mirror live state (queue depth, the
scorer's and the local upstream's batchers) are read at scrape time by a
collector, so they can never drift from the truth. Metric names are the ones
the proxy has always exported, so dashboards keep working.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from w2s.proxy.core.types import RoundTrace

log = logging.getLogger("w2s.server")

CONTENT_TYPE = CONTENT_TYPE_LATEST
DEFAULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
QUEUE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ProxyMetrics:
    """The proxy's metric set. Labels stay low-cardinality: route names come
    from config (unknown models are counted as route="-"), never from users."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("w2s_requests_total", "HTTP requests by endpoint, route and status",
                                ["endpoint", "route", "status"], registry=r)
        self.latency = Histogram("w2s_request_seconds", "HTTP request latency by endpoint, route and status",
                                 ["endpoint", "route", "status"], buckets=DEFAULT_BUCKETS, registry=r)
        self.errors = Counter("w2s_errors_total", "errors sent to clients, by error type and status",
                              ["type", "status"], registry=r)
        self.searches = Counter("w2s_searches_total", "searches by route, mode and outcome "
                                "(ok, error, cancelled, timeout)", ["route", "mode", "outcome"], registry=r)
        self.cancelled = Counter("w2s_searches_cancelled_total", "searches stopped because the client went away",
                                 ["route"], registry=r)
        self.search_seconds = Histogram("w2s_search_seconds", "search time (after admission)", ["route", "mode"],
                                        buckets=DEFAULT_BUCKETS, registry=r)
        self.queue_seconds = Histogram("w2s_queue_seconds", "time waiting for a search slot", ["route"],
                                       buckets=QUEUE_BUCKETS, registry=r)
        self.rounds = Counter("w2s_search_rounds_total", "search rounds completed (counted live)", ["route"],
                              registry=r)
        self.upstream_calls = Counter("w2s_upstream_calls_total", "upstream API calls", ["route"], registry=r)
        self.upstream_tokens = Counter("w2s_upstream_tokens_total", "upstream tokens by kind (prompt, completion; "
                                       "cached and cache_write: shares of prompt)", ["route", "kind"], registry=r)
        self.upstream_cost = Counter("w2s_upstream_cost_usd_total", "upstream cost in USD (upstreams with prices)",
                                     ["route"], registry=r)
        self.scorer_tokens = Counter("w2s_scorer_tokens_total", "guide-model tokens computed", ["route"], registry=r)

    def watch(self, admission, engine: Callable[[], object | None]) -> None:
        """Read the admission queue and the engine (None while it is built) at every scrape."""
        self.registry.register(_Live(admission, engine))

    # --- what the service reports ------------------------------------------------

    def request_done(self, endpoint: str, route: str, status: int, seconds: float) -> None:
        labels = {"endpoint": endpoint, "route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)

    def round_done(self, route: str, trace: RoundTrace) -> None:
        self.rounds.labels(route=route).inc()
        self.upstream_calls.labels(route=route).inc(trace.upstream_calls)
        self.upstream_tokens.labels(route=route, kind="prompt").inc(trace.upstream_prompt_tokens)
        self.upstream_tokens.labels(route=route, kind="completion").inc(trace.upstream_completion_tokens)
        self.upstream_tokens.labels(route=route, kind="cached").inc(trace.upstream_cached_tokens)
        self.upstream_tokens.labels(route=route, kind="cache_write").inc(trace.upstream_cache_write_tokens)
        if trace.cost_usd is not None:
            self.upstream_cost.labels(route=route).inc(trace.cost_usd)
        self.scorer_tokens.labels(route=route).inc(trace.scorer_tokens)

    def search_done(self, route: str, mode: str, outcome: str, seconds: float) -> None:
        if outcome == "cancelled":
            self.cancelled.labels(route=route).inc()
        self.searches.labels(route=route, mode=mode, outcome=outcome).inc()
        self.search_seconds.labels(route=route, mode=mode).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Gauges and counters kept elsewhere, read at scrape time."""

    def __init__(self, admission, engine: Callable[[], object | None]):
        self.admission = admission
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return ()  # unknown until scraped: the engine may not exist yet

    def collect(self) -> Iterator[Metric]:
        for part in (self._admission, self._scorer, self._generate, self._upstreams):
            try:
                yield from part()
            except Exception as e:  # a broken reading must not take /metrics down
                log.warning("metrics collector %s failed: %s", part.__name__, type(e).__name__)

    def _admission(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("w2s_searches_running", "searches holding a slot", value=self.admission.running)
        yield GaugeMetricFamily("w2s_queue_depth", "requests waiting for a search slot", value=self.admission.waiting)
        engine = self.engine()
        yield GaugeMetricFamily("w2s_ready", "1 once every model is loaded",
                                value=float(bool(engine is not None and engine.ready)))

    def _scorer(self) -> Iterator[Metric]:
        engine = self.engine()
        if engine is None:
            return
        st = engine.scorer_stats
        for name, doc, value in (
            ("w2s_scorer_batches_total", "scorer forward passes", st.batches),
            ("w2s_scorer_rows_total", "scorer rows (partial answers) scored", st.rows),
            ("w2s_scorer_batch_tokens_total", "real tokens fed to the guide models", st.tokens),
            ("w2s_scorer_padded_tokens_total", "padded tokens the guide models attended over", st.padded_tokens),
            ("w2s_scorer_busy_seconds_total", "time spent in scorer forward passes", st.seconds),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("w2s_scorer_queue_depth", "scorer jobs waiting for the next forward pass",
                                value=engine.batcher.queue_depth)
        yield _histogram("w2s_scorer_batch_rows", "rows per scorer forward pass", st.batch_rows, ROWS_BUCKETS)

    def _generate(self) -> Iterator[Metric]:
        engine = self.engine()
        if engine is None:
            return
        stats = engine.generate_stats()
        for attr, name, doc in (
            ("calls", "w2s_local_generate_calls_total", "local upstream generate calls (one model pass set)"),
            ("requests", "w2s_local_generate_requests_total",
             "sample requests served by those calls (requests / calls = searches merged per call)"),
            ("rows", "w2s_local_generate_rows_total", "continuations generated by the local upstream"),
        ):
            fam = CounterMetricFamily(name, doc, labels=["upstream"])
            for upstream, st in stats.items():
                fam.add_metric([upstream], getattr(st, attr))
            yield fam


    def _upstreams(self) -> Iterator[Metric]:
        engine = self.engine()
        if engine is None:
            return
        cooling = GaugeMetricFamily("w2s_upstream_cooling_down", "1 while the upstream cools down after failures",
                                    labels=["upstream"])
        fails = GaugeMetricFamily("w2s_upstream_consecutive_failures", "failed upstream calls in a row",
                                  labels=["upstream"])
        cooldowns = CounterMetricFamily("w2s_upstream_cooldowns_total", "cooldowns started", labels=["upstream"])
        max_n = GaugeMetricFamily("w2s_upstream_max_n", "draws one upstream call may ask for (n), as configured "
                                  "or as learned from a server that ignores or caps n", labels=["upstream"])
        style = GaugeMetricFamily("w2s_upstream_continuation_style", "1 for the way a chat-continue upstream's "
                                  "partial answer is marked (vllm, prefix, partial, plain)", labels=["upstream", "style"])
        for name, guard in engine.upstreams.items():
            h = guard.health
            cooling.add_metric([name], float(h.cooling_down))
            fails.add_metric([name], h.consecutive_failures)
            cooldowns.add_metric([name], h.cooldowns)
            caps = guard.capabilities()
            if isinstance(caps.get("max_n"), int):
                max_n.add_metric([name], caps["max_n"])
            if "continuation_style" in caps:
                style.add_metric([name, caps["continuation_style"]], 1.0)
        yield from (cooling, fails, cooldowns, max_n, style)


def _histogram(name: str, doc: str, seen: dict[float, int], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    """A histogram from {observed value: count} kept elsewhere."""
    cumulative = [(floatToGoString(b), sum(c for v, c in seen.items() if v <= b)) for b in buckets]
    cumulative.append(("+Inf", sum(seen.values())))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=sum(v * c for v, c in seen.items()))
