"""Small helpers for reading the exposition in tests."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def exposition(registry: CollectorRegistry = REGISTRY) -> str:
    return generate_latest(registry).decode()


def samples(text: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    text = exposition() if text is None else text
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(name: str, text: str | None = None, **labels: str) -> float | None:
    """Like PromQL ``sum(name{labels})``: the sum of the samples whose labels include
    ``labels``, or ``None`` when there is none."""
    found = [
        v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls)
    ]
    return sum(found) if found else None
