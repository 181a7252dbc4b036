"""Prometheus exposition: a collector over the store, the ``/metrics`` server and web apps.

The collector is registered in prometheus_client's default registry, so an application that
already serves ``/metrics`` with prometheus_client exposes the ``jobtrack_*`` families
without further code. With ``PROMETHEUS_MULTIPROC_DIR`` set, the server and apps built here
aggregate every process's files instead (see :mod:`.multiprocess`).
"""

from __future__ import annotations

import contextvars
import gzip
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    make_asgi_app,
    make_wsgi_app,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from otel_jobtrack._core import contract as c
from otel_jobtrack._core import errors
from otel_jobtrack._core.store import STORE, Store
from otel_jobtrack.exporters.prometheus.render import render_text
from otel_jobtrack.exporters.prometheus.server import (
    literal_only_asgi,
    literal_only_wsgi,
    start_server,
)

_LE = [str(float(b)) for b in c.DURATION_BUCKETS] + ["+Inf"]


_Families = tuple[
    CounterMetricFamily,
    HistogramMetricFamily,
    CounterMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
]


class JobtrackCollector(Collector):
    """Turns the store's totals into the contract's metric families at scrape time."""

    def __init__(self, store: Store = STORE) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry detect clashes without running a collection.
        return list(self._families())

    def _families(self) -> _Families:
        return (
            CounterMetricFamily(c.RUNS_TOTAL, c.HELP[c.RUNS_TOTAL], labels=c.RUN_LABELS),
            HistogramMetricFamily(c.RUN_DURATION, c.HELP[c.RUN_DURATION], labels=c.RUN_LABELS),
            CounterMetricFamily(
                c.RESOURCES_TOTAL, c.HELP[c.RESOURCES_TOTAL], labels=c.SERIES_LABELS
            ),
            GaugeMetricFamily(
                c.LAST_RUN_TIMESTAMP, c.HELP[c.LAST_RUN_TIMESTAMP], labels=c.RUN_LABELS
            ),
            GaugeMetricFamily(
                c.RUNS_IN_PROGRESS, c.HELP[c.RUNS_IN_PROGRESS], labels=c.SERIES_LABELS
            ),
            GaugeMetricFamily(
                c.OLDEST_RUN_START, c.HELP[c.OLDEST_RUN_START], labels=c.SERIES_LABELS
            ),
            GaugeMetricFamily(
                c.EXPECTED_INTERVAL, c.HELP[c.EXPECTED_INTERVAL], labels=c.JOB_LABELS
            ),
            GaugeMetricFamily(c.GRACE, c.HELP[c.GRACE], labels=c.JOB_LABELS),
            GaugeMetricFamily(c.MAX_RUNTIME, c.HELP[c.MAX_RUNTIME], labels=c.JOB_LABELS),
            CounterMetricFamily(
                c.INSTRUMENTATION_ERRORS, c.HELP[c.INSTRUMENTATION_ERRORS], labels=("where",)
            ),
            CounterMetricFamily(c.EXPORT_ERRORS, c.HELP[c.EXPORT_ERRORS], labels=("exporter",)),
            CounterMetricFamily(
                c.OVERFLOW_RUNS, c.HELP[c.OVERFLOW_RUNS], labels=("kind", "job_name", "limit")
            ),
        )

    def collect(self) -> Iterator[Metric]:
        if _rendered_directly.get():
            return  # this scrape writes our families itself (metrics_wsgi_app)
        try:
            yield from self._collect()
        except Exception as exc:
            errors.instrumentation_error("prometheus collect", exc)

    def _collect(self) -> _Families:
        (
            runs,
            duration,
            resources,
            last_run,
            in_progress,
            oldest,
            interval,
            grace,
            max_runtime,
            instr_errors,
            export_errors,
            overflow_runs,
        ) = families = self._families()
        states = c.STATES
        store = self.store
        rows = store.totals()
        with store.lock:
            cadences = list(store.cadences.items())
            overflows = list(store.overflow_runs.items())
        for series, nruns, sums, buckets, last_end, nres, nprog, first in rows:
            kind, job, tenant = series.kind, series.job_name, series.tenant
            labels = [kind, job, tenant]
            for i, state in enumerate(states):
                run_labels = [kind, job, tenant, state]
                # Every state from the first run on, zeros included: a counter that appears
                # at its first failure hides that failure from rate() and increase().
                runs.add_metric(run_labels, nruns[i])
                if not nruns[i]:
                    continue
                acc = 0
                cumulative = []
                for le, count in zip(_LE, buckets[i], strict=False):
                    acc += count
                    cumulative.append((le, acc))
                duration.add_metric(run_labels, cumulative, sums[i])
                end = last_end[i]
                if end is not None:
                    last_run.add_metric(run_labels, end)
            resources.add_metric(labels, nres)
            in_progress.add_metric(labels, nprog)
            if first is not None:
                oldest.add_metric(labels, first)
        for (kind, job), cadence in cadences:
            if cadence.expected_interval is not None:
                interval.add_metric([kind, job], cadence.expected_interval)
            if cadence.grace is not None:
                grace.add_metric([kind, job], cadence.grace)
            if cadence.max_runtime is not None:
                max_runtime.add_metric([kind, job], cadence.max_runtime)
        for where, count in errors.instrumentation_error_counts().items():
            instr_errors.add_metric([where], count)
        for exporter, count in errors.export_error_counts().items():
            export_errors.add_metric([exporter], count)
        for (kind, job, limit), count in overflows:
            overflow_runs.add_metric([kind, job, limit], count)
        return families


COLLECTOR = JobtrackCollector()
_registered = False


def register_default_collector() -> None:
    """Add the collector to prometheus_client's default registry (once)."""
    global _registered
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True


def exposition_registry() -> CollectorRegistry:
    """The registry ``/metrics`` should serve: this process, or all processes in multiprocess
    mode (``PROMETHEUS_MULTIPROC_DIR`` set and this process writing there)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from otel_jobtrack.exporters.prometheus import multiprocess

        if multiprocess.enabled():
            return multiprocess.multiprocess_registry()
    register_default_collector()
    return REGISTRY


def start_metrics_server(
    port: int | None = None,
    addr: str | None = None,
    registry: CollectorRegistry | None = None,
    **server_options: Any,
) -> tuple[Any, Any]:
    """Serve ``/metrics`` in a background thread; returns ``(server, thread)``.

    Defaults follow the OpenTelemetry Prometheus exporter: ``OTEL_EXPORTER_PROMETHEUS_HOST``
    (default ``localhost``) and ``OTEL_EXPORTER_PROMETHEUS_PORT`` (default 9464). Extra
    keyword arguments (``certfile``, ``keyfile``, ``client_cafile``, ``username``,
    ``password``...) go to :func:`.server.start_server`, which takes the same TLS options as
    ``prometheus_client.start_http_server`` plus basic auth, and serves ``/metrics`` only.
    """
    if addr is None:
        addr = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    if port is None:
        port = _env_port()
    return start_server(
        port, addr=addr, registry=registry or exposition_registry(), **server_options
    )


def _env_port() -> int:
    raw = os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or "9464"
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(
            f"OTEL_EXPORTER_PROMETHEUS_PORT must be a port number, got {raw!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"OTEL_EXPORTER_PROMETHEUS_PORT out of range: {port}")
    return port


def make_metrics_wsgi_app(registry: CollectorRegistry | None = None) -> Any:
    """A WSGI app serving the exposition, to mount at ``/metrics`` in an existing web app.

    A percent-encoded path is refused when the WSGI server passes the raw URI; connection
    limits, deadlines, header limits, TLS and authentication are the host server's."""
    return literal_only_wsgi(metrics_wsgi_app(registry or exposition_registry()))


_rendered_directly: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "otel_jobtrack_rendered_directly", default=False
)


def render_registry(registry: Collector) -> bytes:
    """``generate_latest(registry)``, with our families written by the fast renderer.

    Byte-for-byte the same text; several times faster at high tenant counts. Registries
    that do not hold our collector are rendered by prometheus_client alone.
    """
    if registry is not REGISTRY or not _registered:
        return generate_latest(registry)
    token = _rendered_directly.set(True)
    try:
        others = generate_latest(registry)
    finally:
        _rendered_directly.reset(token)
    try:
        ours = render_text(COLLECTOR.store)
    except Exception as exc:
        errors.instrumentation_error("prometheus render", exc)
        ours = b""
    return others + ours


def metrics_wsgi_app(registry: Collector, disable_compression: bool = False) -> Any:
    """prometheus_client's WSGI app, with the plain-text format rendered by
    :func:`render_registry` (OpenMetrics and ``name[]`` requests go to prometheus_client)."""
    fallback = make_wsgi_app(registry, disable_compression=disable_compression)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        if encoder is not generate_latest or "name[]" in environ.get("QUERY_STRING", ""):
            return fallback(environ, start_response)
        body = render_registry(registry)
        headers = [("Content-Type", content_type)]
        if not disable_compression and gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


def make_metrics_asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving the exposition, to mount at ``/metrics`` in an existing web app.

    Like :func:`make_metrics_wsgi_app`, it refuses a percent-encoded path (``raw_path``)."""
    return literal_only_asgi(make_asgi_app(registry or exposition_registry()))


def is_finite(value: float) -> bool:
    return not (math.isinf(value) or math.isnan(value))
