"""Prometheus metrics in the text exposition format (v0.0.4), by hand.

Counters and histograms are updated by the handlers; gauges that mirror live
state (queue depth, scorer batcher stats) are read at scrape time from
collector callbacks, so they can never drift from the truth.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # (name suffix incl. metric name, labels, value)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels) + "}"


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


@dataclass
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    kind: str = "untyped"

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple((k, str(labels[k])) for k in self.labelnames)

    def samples(self) -> Iterable[Sample]:
        return ()


@dataclass
class Counter(_Metric):
    kind: str = "counter"
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def total(self) -> float:
        return sum(self.values.values())

    def samples(self) -> Iterable[Sample]:
        for key, v in sorted(self.values.items()):
            yield self.name, key, v


DEFAULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class Histogram(_Metric):
    kind: str = "histogram"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, b in enumerate(self.buckets):
            if value <= b:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self.sums[key] = self.sums.get(key, 0.0) + value

    def samples(self) -> Iterable[Sample]:
        for key in sorted(self.counts):
            counts = self.counts[key]
            for b, c in zip((*self.buckets, math.inf), counts):
                yield f"{self.name}_bucket", key + (("le", _fmt_value(b)),), c
            yield f"{self.name}_sum", key, self.sums[key]
            yield f"{self.name}_count", key, counts[-1]


@dataclass
class Collected(_Metric):
    """A gauge (or a counter kept elsewhere) read at scrape time: `read()` -> {labels: value}."""

    kind: str = "gauge"
    read: Callable[[], dict[Labels, float]] = dict

    def samples(self) -> Iterable[Sample]:
        for key, v in sorted(self.read().items()):
            yield self.name, key, v


@dataclass
class CollectedHistogram(_Metric):
    """A histogram built at scrape time from {observed value: count} kept elsewhere."""

    kind: str = "histogram"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    read: Callable[[], dict[float, int]] = dict

    def samples(self) -> Iterable[Sample]:
        seen = self.read()
        if not seen:
            return
        for b in (*self.buckets, math.inf):
            yield f"{self.name}_bucket", (("le", _fmt_value(b)),), sum(c for v, c in seen.items() if v <= b)
        yield f"{self.name}_sum", (), sum(v * c for v, c in seen.items())
        yield f"{self.name}_count", (), sum(seen.values())


class Registry:
    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"duplicate metric {metric.name}")
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help: str, *labels: str) -> Counter:
        return self.add(Counter(name, help, labels))  # type: ignore[return-value]

    def histogram(self, name: str, help: str, *labels: str, buckets=DEFAULT_BUCKETS) -> Histogram:
        return self.add(Histogram(name, help, labels, buckets=tuple(buckets)))  # type: ignore[return-value]

    def collected(self, name: str, help: str, read: Callable[[], dict[Labels, float]],
                  kind: str = "gauge") -> Collected:
        return self.add(Collected(name, help, (), kind, read=read))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            try:
                samples = list(m.samples())
            except Exception as e:  # a broken collector must not take /metrics down
                lines.append(f"# {m.name}: collector failed: {type(e).__name__}")
                continue
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            for name, labels, value in samples:
                lines.append(f"{name}{_fmt_labels(labels)} {_fmt_value(value)}")
        return "\n".join(lines) + "\n"


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_text(text: str) -> dict[str, float]:
    """`name{a="1",b="2"}` -> value, for tests and quick checks.

    Keys are canonical: labels sorted by name, so a lookup does not depend on
    the order a metric declares its labels in.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name, brace, labels = key.partition("{")
        if brace:
            pairs = sorted(_LABEL.findall(labels))
            key = name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"
        out[key] = float(value)
    return out


ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ProxyMetrics:
    """The proxy's metric set. Labels stay low-cardinality: route names come
    from config (unknown models are counted as route="-"), never from users."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter("w2s_requests_total", "HTTP requests by endpoint, route and status",
                                  "endpoint", "route", "status")
        self.latency = r.histogram("w2s_request_seconds", "HTTP request latency by endpoint, route and status",
                                   "endpoint", "route", "status")
        self.errors = r.counter("w2s_errors_total", "errors sent to clients, by error type and status",
                                "type", "status")
        self.searches = r.counter("w2s_searches_total", "searches by route, mode and outcome "
                                  "(ok, error, cancelled, timeout)", "route", "mode", "outcome")
        self.cancelled = r.counter("w2s_searches_cancelled_total",
                                   "searches stopped because the client went away", "route")
        self.search_seconds = r.histogram("w2s_search_seconds", "search time (after admission)", "route", "mode")
        self.queue_seconds = r.histogram("w2s_queue_seconds", "time waiting for a search slot", "route",
                                         buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300))
        self.rounds = r.counter("w2s_search_rounds_total", "search rounds completed (counted live)", "route")
        self.upstream_calls = r.counter("w2s_upstream_calls_total", "upstream API calls", "route")
        self.upstream_tokens = r.counter("w2s_upstream_tokens_total", "upstream tokens by kind "
                                         "(prompt, completion)", "route", "kind")
        self.scorer_tokens = r.counter("w2s_scorer_tokens_total", "guide-model tokens computed", "route")

    def add_live(self, admission, engine: Callable[[], object | None]) -> None:
        """Gauges read at scrape time from the admission queue and the engine (None while it is built)."""
        r = self.registry
        r.collected("w2s_searches_running", "searches holding a slot", lambda: {(): admission.running})
        r.collected("w2s_queue_depth", "requests waiting for a search slot", lambda: {(): admission.waiting})
        r.collected("w2s_ready", "1 once every model is loaded", lambda: {(): float(bool(getattr(engine(), "ready", False)))})

        def stats():
            batcher = getattr(engine(), "batcher", None)  # absent until built, or on fakes
            return getattr(batcher, "stats", None), batcher

        def stat(attr: str):
            return lambda: {} if stats()[0] is None else {(): float(getattr(stats()[0], attr))}

        r.collected("w2s_scorer_batches_total", "scorer forward passes", stat("batches"), "counter")
        r.collected("w2s_scorer_rows_total", "scorer rows (partial answers) scored", stat("rows"), "counter")
        r.collected("w2s_scorer_batch_tokens_total", "real tokens fed to the guide models",
                    stat("tokens"), "counter")
        r.collected("w2s_scorer_padded_tokens_total", "padded tokens the guide models attended over",
                    stat("padded_tokens"), "counter")
        r.collected("w2s_scorer_busy_seconds_total", "time spent in scorer forward passes",
                    stat("seconds"), "counter")
        r.collected("w2s_scorer_queue_depth", "scorer jobs waiting for the next forward pass",
                    lambda: {} if stats()[1] is None else {(): float(getattr(stats()[1], "queue_depth", 0))})
        r.add(CollectedHistogram("w2s_scorer_batch_rows", "rows per scorer forward pass", (),
                                 buckets=ROWS_BUCKETS,
                                 read=lambda: {} if stats()[0] is None else dict(stats()[0].batch_rows)))

        def generate_stat(attr: str):
            """Per local upstream: its cross-search generate batcher (providers/local_batch.py)."""
            def read() -> dict[Labels, float]:
                samplers = getattr(engine(), "samplers", None) or {}
                return {(("upstream", name),): float(getattr(s.batcher.stats, attr))
                        for name, s in samplers.items() if hasattr(getattr(s, "batcher", None), "stats")}
            return read

        r.collected("w2s_local_generate_calls_total", "local upstream generate calls (one model pass set)",
                    generate_stat("calls"), "counter")
        r.collected("w2s_local_generate_requests_total", "sample requests served by those calls "
                    "(requests / calls = searches merged per call)", generate_stat("requests"), "counter")
        r.collected("w2s_local_generate_rows_total", "continuations generated by the local upstream",
                    generate_stat("rows"), "counter")

    def render(self) -> str:
        return self.registry.render()
