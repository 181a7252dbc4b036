"""Delivering a short-lived process's runs to a Prometheus Pushgateway.

A crontab entry that runs one script is gone before any scrape, so it pushes its series at
the end instead. The Pushgateway keeps the last push of every group forever and Prometheus
scrapes that, which shapes what is worth alerting on:

- ``jobtrack_last_run_timestamp_seconds{state="success"}`` is the signal: alert on
  ``time() - it > expected interval + grace``. It stays correct however old the push is.
- Counters restart in every process, and each push replaces the previous one, so ``rate()``
  or ``increase()`` over pushed counters compare unrelated processes: don't use them.

Each state gets its own group (``{job=..., state="success"}`` and so on, plus one group
without ``state`` for resources, in-progress and cadence gauges), and every push replaces
only its own group. So a failed run does not erase the last success: both timestamps stay
and can be compared.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import push_to_gateway as _push
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from otel_jobtrack._core import contract as c
from otel_jobtrack._core import errors
from otel_jobtrack._core.store import STORE, Store
from otel_jobtrack.exporters.deadline import push_handler
from otel_jobtrack.exporters.prometheus.app import JobtrackCollector

logger = logging.getLogger("otel_jobtrack")

_RUNS_FAMILY = c.RUNS_TOTAL.removesuffix("_total")

STATE_GROUP_LABEL = "state"
"""Grouping-key label that separates the groups of each final state."""

_RESERVED = frozenset((*c.RUN_LABELS, "le", "job"))
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Fixed(Collector):
    """Serves families collected once, so every group comes from the same moment."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def _copy(family: Metric, samples: list[Any]) -> Metric:
    metric = Metric(family.name, family.documentation, family.type, family.unit)
    metric.samples = samples
    return metric


def groups(store: Store = STORE) -> dict[str | None, list[Metric]]:
    """The store's families split by final state (key ``None``: families without a state)."""
    out: dict[str | None, list[Metric]] = {}
    for family in JobtrackCollector(store).collect():
        by_state: dict[str | None, list[Any]] = {}
        for sample in family.samples:
            if family.name == _RUNS_FAMILY and not sample.value:
                # A state that did not happen in this process must not replace the group a
                # previous push left for it (that group holds its last-run timestamp).
                continue
            by_state.setdefault(sample.labels.get("state"), []).append(sample)
        for state, samples in by_state.items():
            out.setdefault(state, []).append(_copy(family, samples))
    return out


def check_push_target(url: str, grouping_key: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Validated ``(url, grouping key)``: mistakes fail where the push is set up."""
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Pushgateway url must be http:// or https://, got {url!r}")
    key = {}
    for name, value in grouping_key.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise ValueError(f"grouping key label {name!r} is not a valid label name")
        if name in _RESERVED:
            raise ValueError(
                f"grouping key label {name!r} would overwrite a label of the pushed series; "
                f"use another name (e.g. 'instance')"
            )
        if not isinstance(value, str) or not value:
            raise ValueError(f"grouping key value of {name!r} must be a non-empty string")
        key[name] = value
    return url, key


def push_to_gateway(
    url: str,
    job: str,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    store: Store = STORE,
) -> bool:
    """Push this process's runs to the Pushgateway at ``url`` now; ``True`` if it got them.

    ``job`` names the groups (it becomes the ``job`` label after a scrape with
    ``honor_labels: true``): use one per script, e.g. its service name. ``grouping_key`` adds
    labels such as ``{"instance": hostname}``, only if the same script on two hosts should
    keep separate groups. ``timeout`` (seconds) bounds the whole push, every group, name
    resolution and a gateway that answers one byte at a time included. Network problems are
    logged (the first, then every 100th) and counted in ``jobtrack_export_errors_total``, never
    raised; nothing is pushed by a process in which no run started.
    """
    if not isinstance(job, str) or not job:
        raise ValueError("job must be a non-empty string")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    url, base_key = check_push_target(url, grouping_key or {})
    deadline = time.monotonic() + timeout
    # Every socket operation gets only the time left to the deadline, not a fresh timeout.
    handler = push_handler(deadline)
    try:
        with store.lock:
            if not store.series:
                return True
        split = groups(store)
    except Exception as exc:
        errors.instrumentation_error("pushgateway collect", exc)
        return False
    order = [s for s in c.STATES if s in split] + ([None] if None in split else [])
    for state in order:
        key = dict(base_key)
        if state is not None:
            key[STATE_GROUP_LABEL] = state
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(split[state]))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            errors.export_error("pushgateway", TimeoutError(f"push to {url} ran out of time"))
            return False
        try:
            _push(
                url,
                job=job,
                registry=registry,
                grouping_key=key,
                timeout=remaining,
                handler=handler,
            )
        except Exception as exc:
            # The gateway is down or refusing: the other groups would fail the same way.
            errors.export_error("pushgateway", exc)
            return False
    return True
