"""Prometheus text -> {'name{a="1",b="2"}': value}, with labels sorted by name,
so a lookup does not depend on the order a metric declares its labels in."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str | bytes) -> dict[str, float]:
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out
