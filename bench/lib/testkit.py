"""The test suite's fakes and probes that some benches reuse (a fault-injecting upstream, a scripted engine,
a local Ray cluster, a /metrics parser), imported from one place: if the tests move them, only this file
changes, and tests/unit/test_bench_scripts.py fails until it does."""
from __future__ import annotations

from tests.support.fault_upstream import FaultUpstream
from tests.support.prom import parse_metrics
from tests.support.ray_cluster import LocalRayCluster
from tests.support.scripted import fake_config, scripted_engine

__all__ = ["FaultUpstream", "LocalRayCluster", "fake_config", "parse_metrics", "scripted_engine"]
