"""OpenTelemetry instruments that yield the contract's Prometheus series over OTLP.

Instrument names are the contract's Prometheus names, with units chosen so that the usual
OTLP-to-Prometheus translation (``_total`` for monotonic sums, ``_seconds`` for unit ``s``,
``{...}`` units dropped) leaves them unchanged; a backend that does not translate names stores
the same names too. See ``docs/otlp.md`` for the mapping table.

Everything except the duration histogram is an observable instrument whose callback reads the
store's totals when the SDK collects (an export cycle), so a run costs one histogram
``record()`` here and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import View

from otel_jobtrack._core import contract as c
from otel_jobtrack._core import errors
from otel_jobtrack._core.store import STORE, Series, Store
from otel_jobtrack.exporters.deadline import DeadlineExceeded, OneAtATime

METER_NAME = "otel_jobtrack"
"""Instrumentation scope of every otel-jobtrack instrument."""

CARDINALITY_LIMIT = 100_000
"""Attribute sets per instrument in a provider otel-jobtrack owns (the SDK default is 2000,
past which points merge into one ``otel.metric.overflow`` point and stop matching /metrics)."""

_CACHE_KEY = "otlp"

# (name, unit) of each instrument; the name is also what Prometheus shows.
RUNS = (c.RUNS_TOTAL, "{run}")
DURATION = (c.RUN_DURATION, "s")
RESOURCES = (c.RESOURCES_TOTAL, "{resource}")
LAST_RUN = (c.LAST_RUN_TIMESTAMP, "s")
IN_PROGRESS = (c.RUNS_IN_PROGRESS, "{run}")
OLDEST = (c.OLDEST_RUN_START, "s")
INTERVAL = (c.EXPECTED_INTERVAL, "s")
GRACE = (c.GRACE, "s")
MAX_RUNTIME = (c.MAX_RUNTIME, "s")
INSTRUMENTATION_ERRORS = (c.INSTRUMENTATION_ERRORS, "{error}")
EXPORT_ERRORS = (c.EXPORT_ERRORS, "{error}")

_Attrs = tuple[dict[str, str], ...]
"""Per series: the attribute dict of each state (index = state), then the stateless one."""


def _series_attrs(series: Series) -> _Attrs:
    cached = series.exporter_cache.get(_CACHE_KEY)
    if cached is None:
        base = {"kind": series.kind, "job_name": series.job_name, "tenant": series.tenant}
        cached = (*({**base, "state": state} for state in c.STATES), base)
        series.exporter_cache[_CACHE_KEY] = cached
    return cached  # type: ignore[return-value]


class OtlpInstruments:
    """The contract's instruments on one MeterProvider, fed from a store.

    Also a :class:`~otel_jobtrack._core.store.RunSink` (unlocked) recording each finished run's
    duration, the one value the store cannot hand over at collection time.
    """

    locked = False

    def __init__(self, meter_provider: MeterProvider, store: Store = STORE) -> None:
        from otel_jobtrack import __version__

        self.store = store
        self.active = True
        self._job_attrs: dict[tuple[str, str], dict[str, str]] = {}
        meter = meter_provider.get_meter(METER_NAME, __version__)
        h = c.HELP
        self.histogram = meter.create_histogram(
            DURATION[0],
            unit=DURATION[1],
            description=h[c.RUN_DURATION],
            explicit_bucket_boundaries_advisory=list(c.DURATION_BUCKETS),
        )
        self._record = self.histogram.record
        for (name, unit), create, callback in (
            (RUNS, meter.create_observable_counter, self._observe_runs),
            (RESOURCES, meter.create_observable_counter, self._observe_resources),
            (LAST_RUN, meter.create_observable_gauge, self._observe_last_run),
            (IN_PROGRESS, meter.create_observable_up_down_counter, self._observe_in_progress),
            (OLDEST, meter.create_observable_gauge, self._observe_oldest),
            (INTERVAL, meter.create_observable_gauge, self._cadence_callback("expected_interval")),
            (GRACE, meter.create_observable_gauge, self._cadence_callback("grace")),
            (MAX_RUNTIME, meter.create_observable_gauge, self._cadence_callback("max_runtime")),
            (
                INSTRUMENTATION_ERRORS,
                meter.create_observable_counter,
                self._counts_callback(errors.instrumentation_error_counts, "where"),
            ),
            (
                EXPORT_ERRORS,
                meter.create_observable_counter,
                self._counts_callback(errors.export_error_counts, "exporter"),
            ),
        ):
            create(name, callbacks=[_guarded(self, name, callback)], unit=unit, description=h[name])

    # -- RunSink ------------------------------------------------------------------------

    def run_started(self, series: Series, start_wall: float, oldest_start: float | None) -> None:
        pass

    def run_finished(
        self,
        series: Series,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
        oldest_start: float | None,
    ) -> None:
        attrs = series.exporter_cache.get(_CACHE_KEY)
        if attrs is None:
            attrs = _series_attrs(series)
        self._record(duration, attrs[state])  # type: ignore[index]

    def close(self) -> None:
        """Stop feeding this provider (its observable callbacks then report nothing)."""
        self.active = False
        self.store.remove_sink(self)

    # -- observable callbacks (run in the SDK's collection thread) ----------------------

    def _observe_runs(self, options: CallbackOptions) -> list[Observation]:
        with self.store.lock:
            rows = [(s, s.runs[:]) for s in self.store.series.values()]
        out = []
        for series, runs in rows:
            attrs = _series_attrs(series)
            # Every state from the first run on, zeros included, so the first failure is an
            # increase that rate() and increase() can see (as on the /metrics path).
            for i, count in enumerate(runs):
                out.append(Observation(count, attrs[i]))
        return out

    def _observe_last_run(self, options: CallbackOptions) -> list[Observation]:
        with self.store.lock:
            rows = [(s, s.last_end[:]) for s in self.store.series.values()]
        out = []
        for series, ends in rows:
            attrs = _series_attrs(series)
            for i, end in enumerate(ends):
                if end is not None:
                    out.append(Observation(end, attrs[i]))
        return out

    def _observe_resources(self, options: CallbackOptions) -> list[Observation]:
        with self.store.lock:
            rows = [(s, s.resources) for s in self.store.series.values()]
        return [Observation(value, _series_attrs(s)[-1]) for s, value in rows]

    def _observe_in_progress(self, options: CallbackOptions) -> list[Observation]:
        with self.store.lock:
            rows = [(s, s.in_progress) for s in self.store.series.values()]
        return [Observation(value, _series_attrs(s)[-1]) for s, value in rows]

    def _observe_oldest(self, options: CallbackOptions) -> list[Observation]:
        with self.store.lock:
            rows = [(s, min(s.starts.values())) for s in self.store.series.values() if s.starts]
        return [Observation(value, _series_attrs(s)[-1]) for s, value in rows]

    def _cadence_callback(self, field: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            with self.store.lock:
                cadences = list(self.store.cadences.items())
            out = []
            for key, cadence in cadences:
                value = getattr(cadence, field)
                if value is not None:
                    attrs = self._job_attrs.get(key)
                    if attrs is None:
                        attrs = self._job_attrs[key] = {"kind": key[0], "job_name": key[1]}
                    out.append(Observation(value, attrs))
            return out

        return observe

    @staticmethod
    def _counts_callback(
        counts: Callable[[], dict[str, int]], label: str
    ) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            return [Observation(n, {label: key}) for key, n in counts().items()]

        return observe


def _guarded(
    owner: OtlpInstruments,
    name: str,
    callback: Callable[[CallbackOptions], list[Observation]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """Observe nothing once detached, and count (not raise) a failing callback."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        if not owner.active:
            return ()
        try:
            return callback(options)
        except Exception as exc:
            errors.instrumentation_error(f"otlp callback {name}", exc)
            return ()

    return observe


# -- attaching to providers ---------------------------------------------------------------

_ATTR = "_otel_jobtrack_instruments"
_attach_lock = threading.Lock()


def attach(meter_provider: MeterProvider, store: Store = STORE) -> OtlpInstruments:
    """Record the store through ``meter_provider``.

    Idempotent per provider: the instruments are kept on the provider object itself, so they
    live exactly as long as it does and attaching again reuses them (an SDK meter cannot
    drop instruments, and creating them twice would only log duplicate-instrument warnings).
    """
    with _attach_lock:
        instruments = getattr(meter_provider, _ATTR, None)
        if not isinstance(instruments, OtlpInstruments) or instruments.store is not store:
            instruments = OtlpInstruments(meter_provider, store)
            # A provider with __slots__ cannot keep them: no reuse then, still correct.
            with contextlib.suppress(AttributeError):
                setattr(meter_provider, _ATTR, instruments)
        instruments.active = True
    store.add_sink(instruments)
    return instruments


def metric_readers(meter_provider: object) -> tuple[object, ...]:
    """The readers of an SDK provider (the SDK exposes no public accessor; before 1.43 they
    are only in its configuration object)."""
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", None)
    return tuple(readers or ())


def is_prometheus_reader(reader: object) -> bool:
    """``opentelemetry-exporter-prometheus``'s reader, which serves prometheus_client's
    default registry, where otel-jobtrack's own collector already is."""
    return any(cls.__name__ == "PrometheusMetricReader" for cls in type(reader).__mro__)


def has_prometheus_reader(meter_provider: object) -> bool:
    return any(is_prometheus_reader(r) for r in metric_readers(meter_provider))


def is_sdk_provider(meter_provider: object) -> bool:
    return isinstance(meter_provider, SdkMeterProvider)


def jobtrack_views(cardinality_limit: int = CARDINALITY_LIMIT) -> list[View]:
    """Views for a provider otel-jobtrack owns: no overflow merging below ``cardinality_limit``."""
    try:
        return [View(meter_name=METER_NAME, aggregation_cardinality_limit=cardinality_limit)]
    except TypeError:  # an SDK without per-view cardinality limits
        return []


# -- exporter wrapper and log bounding ----------------------------------------------------


class ReportingExporter(MetricExporter):
    """Wraps an exporter to bound each export as a whole and count failures in
    ``jobtrack_export_errors_total``.

    The wrapped exporter's timeout bounds each socket read, and a collector that answers one
    byte at a time never lets a read time out; then the export, the reader's export lock and
    every flush waiting for it would hang as long as the collector trickles. So the export
    runs in a helper thread that is waited for at most ``min(timeout_millis, timeout)``; an
    export still running after that is abandoned (and counted), and while it runs the next
    exports fail at once instead of starting a second one: one stuck destination holds one
    thread and one connection, however long it stays stuck.

    ``dropping`` turns exports into no-ops: a forked child sets it on the copy of its parent's
    pipeline, whose histogram holds the parent's runs.
    """

    def __init__(
        self,
        inner: MetricExporter,
        name: str = "otlp",
        target: str = "",
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self.name = name
        self.target = target
        self.timeout = timeout
        """Seconds an export may take in all (``None``: only the reader's ``timeout_millis``)."""
        self.dropping = False
        self.failures = 0
        self.in_flight = 0
        """Exports started and not yet returned (a hanging destination keeps this above 0)."""
        self._calls = OneAtATime(f"otel-jobtrack-export-{name}")

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.dropping:
            return MetricExportResult.SUCCESS
        budget = timeout_millis / 1000
        if self.timeout is not None:
            budget = min(budget, self.timeout)
        try:
            result = self._calls.call(
                budget, self._export, metrics_data, timeout_millis=timeout_millis, **kwargs
            )
        except DeadlineExceeded as exc:
            self.failures += 1
            errors.export_error(self.name, TimeoutError(f"export to {self.target}: {exc}"))
            return MetricExportResult.FAILURE
        except Exception as exc:
            self.failures += 1
            errors.export_error(self.name, exc)
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.failures += 1
            errors.export_error(self.name, ConnectionError(f"export to {self.target} failed"))
        return result

    def _export(
        self, metrics_data: MetricsData, timeout_millis: float, **kwargs: Any
    ) -> MetricExportResult:
        self.in_flight += 1
        try:
            return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        finally:
            self.in_flight -= 1

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


SDK_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk.metrics._internal.export",
)
"""Loggers through which the OpenTelemetry SDK reports each failed metric export."""


class BoundedLogFilter(logging.Filter):
    """Lets each distinct message through once per ``window`` seconds.

    During an outage the SDK logs every export attempt and retry; with a short export
    interval that is a line every few seconds for as long as the outage lasts. The first
    occurrence still shows, with its details; repeats are counted in
    ``jobtrack_export_errors_total`` instead.
    """

    def __init__(self, window: float = 300.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[tuple[str, object], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                return False
            self._last[key] = now
        return True

    def install(self, loggers: Sequence[str] = SDK_EXPORT_LOGGERS) -> None:
        for name in loggers:
            logging.getLogger(name).addFilter(self)

    def remove(self, loggers: Sequence[str] = SDK_EXPORT_LOGGERS) -> None:
        for name in loggers:
            logging.getLogger(name).removeFilter(self)
