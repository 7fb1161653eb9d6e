"""Read the operator's registry as Prometheus would scrape it (helpers for tests/metrics)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rke2fleet.metrics import REGISTRY

Sample = tuple[str, dict[str, str], float]


def scrape() -> list[Sample]:
    text = generate_latest(REGISTRY).decode()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def series(metric: str, /, **match: str) -> list[Sample]:
    """Samples named `metric` whose labels include every `match` item."""
    return [s for s in scrape() if s[0] == metric and all(s[1].get(k) == v for k, v in match.items())]
