"""``configure()``: where a process's job metrics go when it does not set up OpenTelemetry itself.

When configuration happens (nothing happens at import: no threads, sockets or SDK objects):

1. ``configure(...)`` configures now; without arguments it reads the standard environment
   variables (``OTEL_METRICS_EXPORTER``, ``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``...).
2. Otherwise, once, when the first tracked run of the process starts: if the application has
   set an SDK ``MeterProvider`` as the global provider, otel-jobtrack records through it and
   configures nothing (the instrumentation-library convention); if it has not, and
   ``OTEL_METRICS_EXPORTER`` or ``OTEL_JOBTRACK_PUSHGATEWAY`` is set, otel-jobtrack
   configures itself from the environment exactly as ``configure()`` would. With neither,
   only ``/metrics`` has the series.

An application-owned provider always wins: ``configure()`` then only attaches to it (and still
sets up the Pushgateway). A provider built here is private: it is not made the global provider,
so it never takes the place of one the application sets up later.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from otel_jobtrack._core import errors, extras
from otel_jobtrack._core.store import STORE, Series
from otel_jobtrack.exporters.deadline import DeadlineExceeded, OneAtATime
from otel_jobtrack.exporters.pushgateway import check_push_target, push_to_gateway

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from opentelemetry.sdk.resources import Resource

    from otel_jobtrack.exporters import otlp

logger = logging.getLogger("otel_jobtrack")

EXPORTERS = ("otlp", "prometheus", "console", "none")
"""Values understood in ``OTEL_METRICS_EXPORTER`` / ``configure(exporters=...)``."""

PROTOCOLS = ("http/protobuf", "grpc")
PUSHGATEWAY_ENV = "OTEL_JOBTRACK_PUSHGATEWAY"
"""Pushgateway URL to push to at exit, with no code (as ``configure(pushgateway=...)``)."""
DEFAULT_EXIT_TIMEOUT = 10.0
DEFAULT_PUSH_TIMEOUT = 5.0
DEFAULT_OTLP_TIMEOUT = 10.0
EXPORT_GRACE = 1.0
"""Seconds an OTLP export may run past the exporter's own timeout before it is abandoned (the
exporter's own error, when it comes in time, says more than ours)."""
RETIRE_TIMEOUT = 1.0


class Exporters:
    """What ``configure()`` set up; ``flush()`` delivers now, ``shutdown()`` undoes it."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None,
        owns_provider: bool,
        exporters: tuple[str, ...],
        instruments: otlp.OtlpInstruments | None,
        reporting: otlp.ReportingExporter | None,
        prometheus_server: tuple[Any, Any] | None,
        pushgateway: str | None,
        push_job: str | None,
        push_grouping_key: dict[str, str],
        push_timeout: float,
        exit_timeout: float,
        log_filter: otlp.BoundedLogFilter | None,
        rebuild: tuple[Sequence[str], str, Mapping[str, Any]] | None,
    ) -> None:
        self.meter_provider = meter_provider
        """What the instruments record through (``None``: no OpenTelemetry export)."""
        self.owns_provider = owns_provider
        """``True`` if otel-jobtrack built the provider (and shuts it down at exit)."""
        self.exporters = exporters
        """Exporters started here: ``otlp``, ``console``, ``prometheus``, ``pushgateway``."""
        self.instruments = instruments
        self.reporting = reporting
        self.prometheus_server = prometheus_server
        self.pushgateway = pushgateway
        self.push_job = push_job
        self.push_grouping_key = push_grouping_key
        self.push_timeout = push_timeout
        self.exit_timeout = exit_timeout
        self.log_filter = log_filter
        self._rebuild = rebuild
        self._closed = False
        self._stale = False
        # A flush that outlived its timeout (a stuck export) is waited for by the next one,
        # never joined by a second: repeated flushes hold one thread, not one each.
        self._flusher = OneAtATime("otel-jobtrack-flush", wait_for_previous=True)

    def __repr__(self) -> str:
        return (
            f"Exporters(exporters={self.exporters!r}, owns_provider={self.owns_provider!r}, "
            f"pushgateway={self.pushgateway!r})"
        )

    def push(self, timeout: float | None = None) -> bool:
        """Push to the configured Pushgateway now (``True`` when there is none)."""
        if self.pushgateway is None or self.push_job is None:
            return True
        return push_to_gateway(
            self.pushgateway,
            self.push_job,
            self.push_grouping_key,
            timeout=min(self.push_timeout, timeout or self.push_timeout),
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Export and push everything now, within ``timeout`` seconds (default: exit timeout).

        ``True`` when every configured destination accepted the data.
        """
        timeout = self.exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        ok = True
        self._ensure_fresh()
        provider = self.meter_provider
        flush = getattr(provider, "force_flush", None)
        if flush is not None and self.instruments is not None:
            failures = self.reporting.failures if self.reporting else 0
            ok = self._flush_otlp(flush, timeout)
            ok = self._delivered(ok, timeout) and ok
            if self.reporting is not None and self.reporting.failures != failures:
                ok = False
        remaining = deadline - time.monotonic()
        if self.pushgateway is not None:
            ok = remaining > 0 and self.push(remaining) and ok
        return ok

    def _flush_otlp(self, flush: Callable[..., object], timeout: float) -> bool:
        try:
            self._flusher.call(timeout, flush, timeout_millis=timeout * 1000)
        except DeadlineExceeded:
            return False  # counted by _delivered
        except Exception as exc:
            errors.export_error("otlp", exc)
            return False
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is left (bounded by ``timeout``) and stop exporting.

        A provider the application owns is left running; only otel-jobtrack's instruments are
        detached from it.
        """
        self._finish(self.exit_timeout if timeout is None else timeout, detach=True)

    def _finish(self, timeout: float, detach: bool) -> None:
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        pusher = None
        if self.pushgateway is not None:
            # In parallel with the OTLP flush: one hanging destination must not use up the
            # other's time, and both together stay within ``timeout``.
            pusher = threading.Thread(
                target=self.push, args=(timeout,), name="otel-jobtrack-push", daemon=True
            )
            pusher.start()
        if self.owns_provider:
            provider = self.meter_provider
            done = _bounded(lambda: _shutdown_provider(provider, timeout), timeout, "shutdown")
            self._delivered(done, timeout)
        if self.instruments is not None and (detach or self.owns_provider):
            self.instruments.close()
        if detach and self.prometheus_server is not None:
            server = self.prometheus_server[0]
            server.shutdown()
            server.server_close()
        if pusher is not None:
            pusher.join(max(0.0, deadline - time.monotonic()))
            if pusher.is_alive():
                errors.export_error(
                    "pushgateway",
                    TimeoutError(f"push to {self.pushgateway} unfinished after {timeout:g}s"),
                )
        if self.log_filter is not None:
            self.log_filter.remove()

    def _delivered(self, finished: bool, timeout: float) -> bool:
        """Count an OTLP export still stuck after ``timeout`` as a failure (it is abandoned)."""
        if finished and not (self.reporting is not None and self.reporting.in_flight):
            return True
        target = self.reporting.target if self.reporting is not None else "OTLP"
        errors.export_error(
            "otlp", TimeoutError(f"export to {target} unfinished after {timeout:g}s")
        )
        return False

    def _after_fork_in_child(self) -> None:
        """Retire the child's copy of a provider built here; a fresh one follows at its first run.

        The copied histogram holds the parent's runs, and the store was reset for the child,
        so exporting it from the child would count the parent's runs twice. Only flags are
        set here: building a provider inside a fork handler can deadlock on locks that other
        libraries hold across the fork.
        """
        if not self.owns_provider or self._rebuild is None or self._closed:
            return
        if self.reporting is not None:
            self.reporting.dropping = True
        if self.instruments is not None:
            self.instruments.close()
        self._stale = True
        STORE.add_sink(_RebuildAfterFork(self))

    def _ensure_fresh(self, wait: bool = True) -> None:
        """Build the forked child's own provider (``wait=False``: on a job's path, where
        nothing may wait; if another thread is configuring, try again at the next run)."""
        if not self._stale or self._rebuild is None or self._closed:
            return
        if not _lock.acquire(blocking=wait):
            STORE.add_sink(_RebuildAfterFork(self))
            return
        try:
            if not self._stale or self._closed:
                return
            old, log_filter = self.meter_provider, self.log_filter
            if log_filter is not None:
                log_filter.remove()
            self.meter_provider, self.instruments, self.reporting, self.log_filter = _own_provider(
                *self._rebuild
            )
            self._stale = False
        finally:
            _lock.release()
        _retire(old)


def _retire(provider: object) -> None:
    """Shut down a forked child's copy of the parent's provider, off the caller's path.

    The copy's export lock may be held by the parent's export thread, which does not exist in
    the child (an export to a hanging collector in progress at fork time): its shutdown then
    waits its whole timeout, which must not happen in the child's first run.
    """

    def retire() -> None:
        try:
            _shutdown_provider(provider, RETIRE_TIMEOUT)
        except Exception as exc:
            errors.instrumentation_error("otlp after fork", exc)

    with contextlib.suppress(RuntimeError):  # no new threads at interpreter exit: skip it
        threading.Thread(target=retire, name="otel-jobtrack-retire", daemon=True).start()


class _RebuildAfterFork:
    """Unlocked sink: builds a forked child's provider when its first run starts."""

    locked = False

    def __init__(self, exporters: Exporters) -> None:
        self.exporters = exporters

    def run_started(self, series: Series, start_wall: float, oldest_start: float | None) -> None:
        STORE.remove_sink(self)
        try:
            self.exporters._ensure_fresh(wait=False)
        except Exception as exc:
            errors.instrumentation_error("otlp after fork", exc)

    def run_finished(
        self,
        series: Series,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
        oldest_start: float | None,
    ) -> None:
        pass


_lock = threading.RLock()
_current: Exporters | None = None
_auto_done = False
_atexit_registered = False
_warned_prometheus_reader = False


def current() -> Exporters | None:
    """What is configured now (``None`` before ``configure()`` or the first run)."""
    return _current


def configure(
    exporters: str | Sequence[str] | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    export_interval: float | None = None,
    service_name: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    meter_provider: MeterProvider | None = None,
    pushgateway: str | None = None,
    push_job: str | None = None,
    push_grouping_key: Mapping[str, str] | None = None,
    push_timeout: float = DEFAULT_PUSH_TIMEOUT,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
) -> Exporters:
    """Set up metric export for this process; replaces any earlier ``configure()``.

    ``exporters``: ``"otlp"``, ``"prometheus"``, ``"console"``, several (a list or
    comma-separated) or ``"none"``; default ``OTEL_METRICS_EXPORTER``, else ``"otlp"``.
    ``prometheus`` serves otel-jobtrack's own ``/metrics`` (``start_metrics_server()``, host and
    port from ``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``), never the SDK's Prometheus reader,
    so the series cannot appear twice.

    OTLP (arguments left ``None`` fall back to the standard environment variables, which the
    OpenTelemetry exporters read themselves): ``endpoint`` (http/protobuf: a URL without a path
    gets ``/v1/metrics``), ``protocol`` (``http/protobuf`` default, or ``grpc``), ``headers``,
    ``timeout`` and ``export_interval`` (seconds), ``service_name``, ``resource_attributes``.
    Temporality is cumulative unless ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``
    says otherwise (Prometheus-compatible receivers need cumulative).

    ``meter_provider``: record through this provider and configure no OpenTelemetry exporter.
    When the application has set an SDK provider as the global one, that is used the same
    way, and the OTLP arguments are ignored (with a warning). A provider with the SDK's
    ``PrometheusMetricReader`` gets no instruments: it serves prometheus_client's default
    registry, where otel-jobtrack's collector already provides the ``jobtrack_*`` families.

    ``pushgateway``: URL of a Pushgateway (default ``OTEL_JOBTRACK_PUSHGATEWAY``) to push to
    at exit (and on ``flush()``); given without ``exporters`` (and without
    ``OTEL_METRICS_EXPORTER``), it is the only destination: no OTLP is attempted. Pushed under
    ``push_job`` (default: the service name, else the script's name) and
    ``push_grouping_key``, each push bounded by ``push_timeout`` seconds.

    At exit, delivering the last data waits at most ``exit_timeout`` seconds in all, whatever
    state the destinations are in.
    """
    return _configure(
        exporters=exporters,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=timeout,
        export_interval=export_interval,
        service_name=service_name,
        resource_attributes=resource_attributes,
        meter_provider=meter_provider,
        pushgateway=pushgateway,
        push_job=push_job,
        push_grouping_key=push_grouping_key,
        push_timeout=push_timeout,
        exit_timeout=exit_timeout,
    )


def _configure(**settings: Any) -> Exporters:
    global _current, _auto_done
    exit_timeout = float(settings["exit_timeout"])
    push_timeout = float(settings["push_timeout"])
    if not exit_timeout > 0 or not push_timeout > 0:
        raise ValueError("exit_timeout and push_timeout must be positive seconds")
    if settings["pushgateway"] is None:
        settings["pushgateway"] = os.environ.get(PUSHGATEWAY_ENV, "").strip() or None
    names = _exporter_names(settings["exporters"], pushgateway=settings["pushgateway"])
    protocol = _protocol(settings["protocol"]) if "otlp" in names else ""
    if settings["pushgateway"] is not None:
        check_push_target(settings["pushgateway"], settings["push_grouping_key"] or {})
    with _lock:
        _auto_done = True
        STORE.remove_sink(_FIRST_RUN)
        previous, _current = _current, None
        if previous is not None:
            previous.shutdown(timeout=min(previous.exit_timeout, exit_timeout))

        provider: MeterProvider | None = settings["meter_provider"]
        app_owned = provider is not None
        if provider is None:
            global_provider = _global_sdk_provider()
            if global_provider is not None:
                provider, app_owned = global_provider, True
                ignored = [
                    key
                    for key in (
                        "exporters",
                        "endpoint",
                        "protocol",
                        "headers",
                        "timeout",
                        "export_interval",
                        "service_name",
                        "resource_attributes",
                    )
                    if settings[key] is not None
                ]
                if ignored:
                    logger.warning(
                        "otel-jobtrack: the application has set a MeterProvider; recording "
                        "through it and ignoring configure(%s)",
                        ", ".join(ignored),
                    )

        started: list[str] = []
        wanted: list[str] = []
        instruments = reporting = log_filter = None
        server = None
        owns = False
        if app_owned:
            assert provider is not None
            instruments = _attach_unless_prometheus(provider)
        else:
            if "prometheus" in names:
                # First: a port already in use fails configure() before anything else started.
                from otel_jobtrack.exporters.prometheus.app import start_metrics_server

                server = start_metrics_server()
                started.append("prometheus")
            sdk_disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
            wanted = [n for n in ("otlp", "console") if n in names and not sdk_disabled]
            wanted = _installed_exporters(wanted, protocol)
            if wanted:
                provider, instruments, reporting, log_filter = _own_provider(
                    wanted, protocol, settings
                )
                owns = True
                started[:0] = wanted

        pushgateway = settings["pushgateway"]
        push_job = None
        if pushgateway is not None:
            push_job = settings["push_job"] or _default_push_job(settings["service_name"])
            started.append("pushgateway")
        _current = Exporters(
            meter_provider=provider,
            owns_provider=owns,
            exporters=tuple(started),
            instruments=instruments,
            reporting=reporting,
            prometheus_server=server,
            pushgateway=pushgateway,
            push_job=push_job,
            push_grouping_key=dict(settings["push_grouping_key"] or {}),
            push_timeout=push_timeout,
            exit_timeout=exit_timeout,
            log_filter=log_filter,
            rebuild=(wanted, protocol, dict(settings)) if owns else None,
        )
        _register_atexit()
        return _current


def _installed_exporters(wanted: Sequence[str], protocol: str) -> list[str]:
    """``wanted`` minus the exporters whose packages are missing (each logged once, counted).

    The core install has no OpenTelemetry packages; OTLP comes with the ``otlp`` (HTTP) or
    ``otlp-grpc`` extra. A job must not fail because an exporter was configured without them.
    """
    transport = "grpc" if protocol == "grpc" else "http"
    kept = []
    for name in wanted:
        modules = {"opentelemetry.sdk.metrics": "opentelemetry-sdk"}
        if name == "otlp":
            what = f"OTLP export over {'gRPC' if transport == 'grpc' else 'HTTP'}"
            extra = "otlp-grpc" if transport == "grpc" else "otlp"
            exporter = f"opentelemetry.exporter.otlp.proto.{transport}.metric_exporter"
            modules[exporter] = f"opentelemetry-exporter-otlp-proto-{transport}"
        else:
            what, extra = f"the {name} exporter", "otlp"
        missing = [dist for module, dist in modules.items() if not extras.installed(module)]
        if not missing:
            kept.append(name)
            continue
        errors.instrumentation_problem(
            f"{name} setup",
            f"{what} is off: {' and '.join(missing)} not installed ({extras.install_hint(extra)})",
        )
    return kept


def _own_provider(
    wanted: Sequence[str], protocol: str, settings: Mapping[str, Any]
) -> tuple[
    MeterProvider, otlp.OtlpInstruments, otlp.ReportingExporter | None, otlp.BoundedLogFilter
]:
    """A private SDK provider with a periodic reader per wanted exporter."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    from otel_jobtrack.exporters import otlp

    readers: list[MetricReader] = []
    reporting = None
    if "otlp" in wanted:
        exporter, target = _otlp_exporter(protocol, settings)
        # The exporter's timeout bounds each read; this bounds the export as a whole.
        reporting = otlp.ReportingExporter(
            exporter, "otlp", target, timeout=_otlp_timeout(settings) + EXPORT_GRACE
        )
        readers.append(_periodic_reader(reporting, settings["export_interval"]))
    if "console" in wanted:
        readers.append(_periodic_reader(ConsoleMetricExporter(), None))
    provider = SdkMeterProvider(
        metric_readers=readers,
        resource=_resource(settings["service_name"], settings["resource_attributes"]),
        views=otlp.jobtrack_views(),
        # Exemplars would link durations to traces; they cost a context lookup per run.
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,  # our own exit handler bounds the final export
    )
    instruments = otlp.attach(provider)
    log_filter = otlp.BoundedLogFilter()
    log_filter.install()
    return provider, instruments, reporting, log_filter


def _attach_unless_prometheus(provider: MeterProvider) -> otlp.OtlpInstruments | None:
    global _warned_prometheus_reader
    from otel_jobtrack.exporters import otlp

    if not otlp.has_prometheus_reader(provider):
        return otlp.attach(provider)
    others = [r for r in otlp.metric_readers(provider) if not otlp.is_prometheus_reader(r)]
    if others and not _warned_prometheus_reader:
        _warned_prometheus_reader = True
        logger.warning(
            "otel-jobtrack: the MeterProvider has a PrometheusMetricReader, whose /metrics "
            "already shows the jobtrack_* series from otel-jobtrack's own collector; its other "
            "readers (%s) get no jobtrack metrics, since every instrument would also reach "
            "/metrics a second time",
            ", ".join(type(r).__name__ for r in others),
        )
    return None


def _global_sdk_provider() -> MeterProvider | None:
    """The global provider if the application has set an SDK one.

    Imports nothing new: without ``opentelemetry.sdk.metrics`` loaded no SDK provider can
    exist (unless ``OTEL_PYTHON_METER_PROVIDER`` names one for the API to load).
    """
    sdk = sys.modules.get("opentelemetry.sdk.metrics")
    if sdk is None and not (
        os.environ.get("OTEL_PYTHON_METER_PROVIDER")
        and extras.installed("opentelemetry.sdk.metrics")
    ):
        return None
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    provider = metrics.get_meter_provider()
    return provider if isinstance(provider, SdkMeterProvider) else None


def _bounded(call: Callable[[], object], timeout: float, what: str) -> bool:
    """Run ``call`` in a helper thread and wait at most ``timeout`` seconds for it.

    The SDK bounds most of its waits, but an export in progress is only bounded by the
    exporter's own timeout; the caller (often the exit of a cron script) must not wait longer
    than it was promised. ``True`` if ``call`` finished in time without raising.
    """
    outcome: list[bool] = []

    def target() -> None:
        try:
            call()
            outcome.append(True)
        except Exception as exc:
            errors.export_error("otlp", exc)
            outcome.append(False)

    thread = threading.Thread(target=target, name=f"otel-jobtrack-{what}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no new threads (interpreter shutting down): run it here
        target()
        return outcome == [True]
    thread.join(max(0.0, timeout))
    return outcome == [True]


def _shutdown_provider(provider: object, timeout: float) -> None:
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown(timeout_millis=timeout * 1000)


def _exporter_names(
    exporters: str | Sequence[str] | None, pushgateway: str | None = None
) -> tuple[str, ...]:
    if exporters is None:
        # A Pushgateway alone means push only: also trying OTLP on localhost:4318 would print
        # connection errors on every run of a cron script (and cron mails them).
        default = "none" if pushgateway else "otlp"
        exporters = os.environ.get("OTEL_METRICS_EXPORTER") or default
    if isinstance(exporters, str):
        exporters = exporters.split(",")
    names = tuple(dict.fromkeys(n.strip().lower() for n in exporters if n.strip()))
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ValueError(f"unknown metrics exporter(s) {unknown}; expected some of {EXPORTERS}")
    if "none" in names and len(names) > 1:
        raise ValueError(f"'none' cannot be combined with other exporters: {names}")
    return names


def _protocol(protocol: str | None) -> str:
    value = (
        (
            protocol
            or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        .strip()
        .lower()
    )
    if value not in PROTOCOLS:
        raise ValueError(f"unsupported OTLP protocol {value!r}; expected one of {PROTOCOLS}")
    return value


def _otlp_exporter(protocol: str, settings: Mapping[str, Any]) -> tuple[MetricExporter, str]:
    endpoint: str | None = settings["endpoint"]
    headers = dict(settings["headers"]) if settings["headers"] is not None else None
    timeout: float | None = settings["timeout"]
    exporter: MetricExporter
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        exporter = GrpcExporter(endpoint=endpoint, headers=headers, timeout=timeout)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpExporter,
        )

        if endpoint is not None and urllib.parse.urlsplit(endpoint).path in ("", "/"):
            endpoint = endpoint.rstrip("/") + "/v1/metrics"
        exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=timeout)
    return exporter, str(getattr(exporter, "_endpoint", endpoint or protocol))


def _otlp_timeout(settings: Mapping[str, Any]) -> float:
    """The OTLP exporter's timeout in seconds, read as the OpenTelemetry exporters read it."""
    timeout = settings.get("timeout")
    if timeout is None:
        raw = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TIMEOUT"
        )
        try:
            timeout = float(raw) if raw else DEFAULT_OTLP_TIMEOUT
        except ValueError:
            timeout = DEFAULT_OTLP_TIMEOUT
    timeout = float(timeout)
    return timeout if 0 < timeout < float("inf") else DEFAULT_OTLP_TIMEOUT


def _periodic_reader(exporter: MetricExporter, interval: float | None) -> MetricReader:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if interval is not None and not interval > 0:
        raise ValueError(f"export_interval must be positive seconds, got {interval!r}")
    return PeriodicExportingMetricReader(
        exporter, export_interval_millis=None if interval is None else interval * 1000
    )


def _resource(service_name: str | None, attributes: Mapping[str, str] | None) -> Resource:
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, str] = dict(attributes or {})
    if service_name:
        attrs["service.name"] = service_name
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME under these.
    resource = Resource.create(attrs)
    if "service.instance.id" not in resource.attributes:
        # SDKs before 1.43 set none: two processes (a forked child's own provider included)
        # would export the same series and overwrite each other's cumulative totals.
        resource = resource.merge(Resource({"service.instance.id": str(uuid.uuid4())}))
    return resource


def _default_push_job(service_name: str | None) -> str:
    name = service_name or os.environ.get("OTEL_SERVICE_NAME")
    if name:
        return name
    script = sys.argv[0] if sys.argv else ""
    if script and script not in ("-c", "-m", "-"):
        return os.path.splitext(os.path.basename(script))[0] or "otel_jobtrack"
    return "otel_jobtrack"


# -- at exit, after fork, and the first run -----------------------------------------------


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True


def _at_exit() -> None:
    """Deliver the last data of a provider built here and push; bounded by exit_timeout.

    An application-owned provider is left to the application (the SDK shuts it down at exit
    itself), so its final collection still sees otel-jobtrack's instruments.
    """
    exporters = _current
    if exporters is not None:
        try:
            exporters._finish(exporters.exit_timeout, detach=False)
        except Exception as exc:  # pragma: no cover - nothing may escape at exit
            errors.instrumentation_error("export at exit", exc)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    exporters = _current
    if exporters is not None:
        try:
            exporters._after_fork_in_child()
        except Exception as exc:
            errors.instrumentation_error("otlp after fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _FirstRun:
    """Unlocked sink that runs the lazy configuration once, when the first run starts."""

    locked = False

    def run_started(self, series: Series, start_wall: float, oldest_start: float | None) -> None:
        STORE.remove_sink(self)
        auto_configure()

    def run_finished(
        self,
        series: Series,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
        oldest_start: float | None,
    ) -> None:
        pass


_FIRST_RUN = _FirstRun()


def auto_configure() -> Exporters | None:
    """The lazy step (2. in the module doc); a no-op after it ran or after ``configure()``."""
    global _auto_done
    with _lock:
        if _auto_done:
            return _current
        _auto_done = True
        try:
            provider = _global_sdk_provider()
            if provider is not None:
                return _configure(**_defaults(meter_provider=provider))
            if (
                os.environ.get("OTEL_METRICS_EXPORTER", "").strip()
                or os.environ.get(PUSHGATEWAY_ENV, "").strip()
            ):
                return _configure(**_defaults())
        except Exception as exc:
            # A job must never fail because its metrics could not be set up.
            errors.instrumentation_error("configure from environment", exc)
        return _current


def _defaults(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = dict.fromkeys(
        (
            "exporters",
            "endpoint",
            "protocol",
            "headers",
            "timeout",
            "export_interval",
            "service_name",
            "resource_attributes",
            "meter_provider",
            "pushgateway",
            "push_job",
            "push_grouping_key",
        )
    )
    settings.update(push_timeout=DEFAULT_PUSH_TIMEOUT, exit_timeout=DEFAULT_EXIT_TIMEOUT)
    settings.update(overrides)
    return settings


def install_first_run_hook() -> None:
    """Arrange for :func:`auto_configure` at the first run (done on import of the package)."""
    if not _auto_done:
        STORE.add_sink(_FIRST_RUN)


def reset_for_tests(timeout: float = 2.0) -> None:
    """Shut down what is configured and re-arm the first-run hook."""
    global _current, _auto_done
    with _lock:
        exporters, _current = _current, None
        _auto_done = False
    if exporters is not None:
        exporters.shutdown(timeout=timeout)
    install_first_run_hook()
