"""OTLP instruments: names, types and values match /metrics; configure() decides sensibly.

In-process tests read the SDK's own output (``InMemoryMetricReader``); the ones that need a
global MeterProvider run in a subprocess, since a process can set it only once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)
from prometheus_client.utils import floatToGoString

from otel_jobtrack import Job, configure, track_run
from otel_jobtrack._core import contract, errors
from otel_jobtrack._core.store import STORE
from otel_jobtrack.exporters import otlp
from otel_jobtrack.exporters import pipeline as config
from tests.backends import REPO_ROOT, free_port
from tests.helpers import samples

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def reset_config() -> Iterator[None]:
    config.reset_for_tests()
    yield
    config.reset_for_tests()


def in_memory() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


# The OTLP-to-Prometheus name translation (Prometheus' and VictoriaMetrics' "Prometheus
# naming"): name split into words, the unit's word appended unless already there ({...} units
# dropped), "total" moved to the end of monotonic sums.
_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": ""}


def prometheus_name(name: str, unit: str, monotonic_sum: bool) -> str:
    words = [w for w in re.split(r"[^a-zA-Z0-9]+", name) if w]
    if unit and "{" not in unit:
        word = _UNIT_WORDS.get(unit, unit)
        if word and word not in words:
            words.append(word)
    if monotonic_sum:
        words = [w for w in words if w != "total"] + ["total"]
    return "_".join(words)


def jobtrack_metrics(data: MetricsData | None) -> list[Any]:
    assert data is not None
    return [
        metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == otlp.METER_NAME
        for metric in sm.metrics
    ]


def as_prometheus_samples(data: MetricsData | None) -> Samples:
    """What a Prometheus-naming OTLP receiver stores for the SDK's output."""
    out: Samples = {}
    for metric in jobtrack_metrics(data):
        monotonic = isinstance(metric.data, Sum) and metric.data.is_monotonic
        name = prometheus_name(metric.name, metric.unit, monotonic)
        for point in metric.data.data_points:
            labels = {k: str(v) for k, v in point.attributes.items()}
            if isinstance(metric.data, Histogram):
                cumulative = 0
                bounds = [*point.explicit_bounds, math.inf]
                for bound, count in zip(bounds, point.bucket_counts, strict=True):
                    cumulative += count
                    le = {**labels, "le": floatToGoString(bound)}
                    out[(name + "_bucket", frozenset(le.items()))] = cumulative
                out[(name + "_sum", frozenset(labels.items()))] = point.sum
                out[(name + "_count", frozenset(labels.items()))] = point.count
            else:
                out[(name, frozenset(labels.items()))] = point.value
    return out


def exposition_samples() -> Samples:
    return {k: v for k, v in samples().items() if k[0].startswith("jobtrack_")}


class Held:
    """A run left in progress (for the in-progress and oldest-start series)."""

    def __init__(self) -> None:
        self.run = track_run("reports.export", kind="batch", tenant="acme", max_runtime=3600)
        self.run.__enter__()

    def finish(self) -> None:
        self.run.__exit__(None, None, None)


def workload() -> Held:
    """Every kind and state, several tenants, resources, cadences and one run in progress."""
    cron = Job("billing.trigger", kind="cron", every=300, grace=60, max_runtime=600)
    with cron.run() as run:
        run.add_resources(2)
    for tenant in ("acme", "globex"):
        with track_run("billing.schedule", kind="schedule", tenant=tenant, every=60) as run:
            run.add_resources(3)
    with pytest.raises(RuntimeError), track_run("billing.sync", kind="resource", tenant="acme"):
        raise RuntimeError("boom")
    with track_run("billing.sync", kind="resource", tenant="acme") as run:
        run.mark_limited()
    with track_run("billing.sync", kind="resource", tenant="globex"):
        time.sleep(0.03)
    with track_run("reports.batch", kind="batch"):
        pass
    return Held()


def test_instrument_names_translate_to_the_contract() -> None:
    provider, reader = in_memory()
    configure(meter_provider=provider)
    held = workload()
    try:
        metrics = {m.name: m for m in jobtrack_metrics(reader.get_metrics_data())}
    finally:
        held.finish()
    expected = {
        contract.RUNS_TOTAL: (Sum, True, "{run}"),
        contract.RUN_DURATION: (Histogram, None, "s"),
        contract.RESOURCES_TOTAL: (Sum, True, "{resource}"),
        contract.LAST_RUN_TIMESTAMP: (Gauge, None, "s"),
        contract.RUNS_IN_PROGRESS: (Sum, False, "{run}"),
        contract.OLDEST_RUN_START: (Gauge, None, "s"),
        contract.EXPECTED_INTERVAL: (Gauge, None, "s"),
        contract.GRACE: (Gauge, None, "s"),
        contract.MAX_RUNTIME: (Gauge, None, "s"),
    }
    assert set(metrics) == set(expected)
    for name, (kind, monotonic, unit) in expected.items():
        metric = metrics[name]
        assert isinstance(metric.data, kind), name
        assert metric.unit == unit, name
        assert metric.description == contract.HELP[name]
        if isinstance(metric.data, Sum):
            assert metric.data.is_monotonic is monotonic, name
        if isinstance(metric.data, Sum | Histogram):
            assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        assert prometheus_name(name, unit, bool(monotonic)) == name
    (point,) = [
        p
        for p in metrics[contract.RUN_DURATION].data.data_points
        if p.attributes["job_name"] == "billing.sync" and p.attributes["tenant"] == "globex"
    ]
    assert tuple(point.explicit_bounds) == contract.DURATION_BUCKETS


def test_same_series_and_values_as_metrics_endpoint() -> None:
    provider, reader = in_memory()
    configure(meter_provider=provider)
    held = workload()
    try:
        otel = as_prometheus_samples(reader.get_metrics_data())
        exposed = exposition_samples()
    finally:
        held.finish()
    assert {k for k in otel if not k[0].endswith("_sum")} == {
        k for k in exposed if not k[0].endswith("_sum")
    }
    assert otel == pytest.approx(exposed)
    names = {name for name, _ in otel}
    assert contract.OLDEST_RUN_START in names and contract.RUNS_TOTAL in names
    states = {dict(labels).get("state") for name, labels in otel if name == contract.RUNS_TOTAL}
    assert states == set(contract.STATES)


def test_series_follow_the_store_between_collections() -> None:
    provider, reader = in_memory()
    configure(meter_provider=provider)
    held = Held()
    first = as_prometheus_samples(reader.get_metrics_data())
    held.finish()
    second = as_prometheus_samples(reader.get_metrics_data())
    in_progress = {n: v for (n, _), v in first.items() if n == contract.RUNS_IN_PROGRESS}
    assert in_progress == {contract.RUNS_IN_PROGRESS: 1}
    assert any(n == contract.OLDEST_RUN_START for n, _ in first)
    # Absent once nothing is in progress, as on /metrics.
    assert not any(n == contract.OLDEST_RUN_START for n, _ in second)
    assert second == pytest.approx(exposition_samples())


def test_self_metrics_are_exported_too() -> None:
    provider, reader = in_memory()
    configure(meter_provider=provider)
    errors.export_error("pushgateway", OSError("down"))
    otel = as_prometheus_samples(reader.get_metrics_data())
    key = (contract.EXPORT_ERRORS, frozenset({("exporter", "pushgateway")}))
    assert otel[key] == 1 == exposition_samples()[key]


def test_only_the_histogram_is_recorded_per_run() -> None:
    provider, _ = in_memory()
    exporters = configure(meter_provider=provider)
    instruments = exporters.instruments
    assert instruments is not None and instruments in STORE.sinks
    assert instruments not in STORE.locked_sinks
    with track_run("hot.path", kind="resource", tenant="t1"):
        pass
    series = STORE.get_series("resource", "hot.path", "t1")
    cached = series.exporter_cache["otlp"]
    assert isinstance(cached, tuple)
    assert cached[0] == {
        "kind": "resource",
        "job_name": "hot.path",
        "tenant": "t1",
        "state": "success",
    }
    # The attribute dicts are made once per series, not per run.
    with track_run("hot.path", kind="resource", tenant="t1"):
        pass
    assert series.exporter_cache["otlp"] is cached


def test_shutdown_detaches_from_an_application_provider() -> None:
    provider, reader = in_memory()
    exporters = configure(meter_provider=provider)
    assert not exporters.owns_provider
    with track_run("a.job", kind="cron"):
        pass
    exporters.shutdown()
    assert exporters.instruments not in STORE.sinks
    # Observable instruments go quiet; the histogram keeps what it had (SDK state).
    left = {m.name for m in jobtrack_metrics(reader.get_metrics_data()) if m.data.data_points}
    assert left == {contract.RUN_DURATION}
    with track_run("a.job", kind="cron"):
        pass
    (metric,) = [m for m in jobtrack_metrics(reader.get_metrics_data()) if m.data.data_points]
    assert [p.count for p in metric.data.data_points] == [1]  # the second run went nowhere
    # Attaching again reuses the instruments (an SDK meter cannot drop them).
    again = configure(meter_provider=provider)
    assert again.instruments is exporters.instruments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporters": "otlp,zipkin"}, "unknown metrics exporter"),
        ({"exporters": ["none", "otlp"]}, "cannot be combined"),
        ({"protocol": "http/json"}, "unsupported OTLP protocol"),
        ({"exit_timeout": 0}, "positive"),
        ({"exporters": "none", "export_interval": -1}, None),
    ],
)
def test_configure_rejects_bad_settings(kwargs: dict[str, Any], message: str | None) -> None:
    if message is None:  # not used without an OTLP exporter: accepted
        assert configure(**kwargs).exporters == ()
        return
    with pytest.raises(ValueError, match=message):
        configure(**kwargs)


def test_push_job_defaults_to_the_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly-backup")
    exporters = configure("none", pushgateway="127.0.0.1:9")
    assert exporters.push_job == "nightly-backup" and exporters.exporters == ("pushgateway",)
    exporters = configure("none", pushgateway="127.0.0.1:9", service_name="svc", push_job="x")
    assert exporters.push_job == "x"


def test_bounded_log_filter_passes_each_message_once_per_window() -> None:
    log_filter = otlp.BoundedLogFilter(window=60)
    log = logging.getLogger("opentelemetry.exporter.otlp.proto.http.metric_exporter")
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    log.addHandler(handler)
    log_filter.install()
    try:
        for i in range(50):
            log.error("Failed to export %s batch code: %s", "metrics", i)
            log.warning("Transient error %s, retrying", i)
    finally:
        log_filter.remove()
        log.removeHandler(handler)
    assert seen == ["Failed to export metrics batch code: 0", "Transient error 0, retrying"]


# -- a global provider, or none: subprocesses ----------------------------------------------


def run_script(code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def test_import_and_runs_without_opentelemetry_setup_load_nothing() -> None:
    result = run_script(
        """
        import json, sys
        import otel_jobtrack
        with otel_jobtrack.track_run("a.job", kind="cron"):
            pass
        from otel_jobtrack.exporters import pipeline as config
        print(json.dumps({
            "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
            "configured": config.current() is not None,
        }))
        """
    )
    assert result == {"otel": [], "configured": False, "stderr": ""}


def test_application_provider_set_before_the_first_run_is_used() -> None:
    result = run_script(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import otel_jobtrack
        from otel_jobtrack.exporters import pipeline as config

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(provider)
        for _ in range(3):
            with otel_jobtrack.track_run("a.job", kind="cron"):
                pass
        names = {
            m.name: [p.count if hasattr(p, "count") else p.value for p in m.data.data_points]
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics
        }
        current = config.current()
        print(json.dumps({
            "names": names,
            "same": current.meter_provider is provider,
            "owns": current.owns_provider,
        }))
        """,
        OTEL_METRICS_EXPORTER="otlp",  # the application's business, not otel-jobtrack's
    )
    assert result["same"] is True and result["owns"] is False
    assert sorted(result["names"][contract.RUNS_TOTAL]) == [0, 0, 3]  # every state, zeros too
    assert result["names"][contract.RUN_DURATION] == [3]


def test_sdk_prometheus_reader_gets_no_second_copy() -> None:
    """The SDK's Prometheus reader serves prometheus_client's registry, which already has
    otel-jobtrack's collector: instruments on that provider would show every family twice.
    And OTEL_METRICS_EXPORTER=prometheus must not start a second server on the same port."""
    port = free_port()
    result = run_script(
        f"""
        import json, urllib.request
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
        import otel_jobtrack
        from otel_jobtrack.exporters import pipeline as config

        # What opentelemetry-instrument does for OTEL_METRICS_EXPORTER=prometheus.
        metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
        start_http_server({port}, addr="127.0.0.1")
        app_counter = metrics.get_meter("app").create_counter("app_requests")
        app_counter.add(1)
        exporters = otel_jobtrack.configure()
        with otel_jobtrack.track_run("a.job", kind="cron"):
            pass
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read()
        print(json.dumps({{
            "body": body.decode(),
            "instruments": exporters.instruments is not None,
            "exporters": exporters.exporters,
        }}))
        """,
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    assert result["instruments"] is False and result["exporters"] == []
    types = re.findall(r"^# TYPE (jobtrack_\w+) ", result["body"], re.MULTILINE)
    assert contract.RUN_DURATION in types
    assert len(types) == len(set(types)), types
    runs = re.findall(r"^jobtrack_runs_total\{.*\} (\S+)$", result["body"], re.MULTILINE)
    assert sorted(runs) == ["0.0", "0.0", "1.0"]  # one run; every state exported
    assert "app_requests_total" in result["body"]  # the application's own metrics still there
    assert "ignoring configure(" not in result["stderr"]


def test_prometheus_in_otel_metrics_exporter_serves_our_own_metrics() -> None:
    port = free_port()
    result = run_script(
        f"""
        import json, sys, urllib.request
        import otel_jobtrack

        exporters = otel_jobtrack.configure()
        with otel_jobtrack.track_run("a.job", kind="cron"):
            pass
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read()
        print(json.dumps({{
            "body": body.decode(),
            "exporters": exporters.exporters,
            "provider": exporters.meter_provider is not None,
            "sdk": "opentelemetry.sdk.metrics" in sys.modules,
        }}))
        """,
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    assert result["exporters"] == ["prometheus"]
    assert result["provider"] is False and result["sdk"] is False
    types = re.findall(r"^# TYPE (jobtrack_\w+) ", result["body"], re.MULTILINE)
    assert len(types) == len(set(types)) and contract.RUN_DURATION in types
    runs = re.findall(r"^jobtrack_runs_total\{.*\} (\S+)$", result["body"], re.MULTILINE)
    assert sorted(runs) == ["0.0", "0.0", "1.0"]  # one run; every state exported


def test_explicit_otlp_settings_yield_to_an_application_provider() -> None:
    result = run_script(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import otel_jobtrack

        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        metrics.set_meter_provider(provider)
        exporters = otel_jobtrack.configure(endpoint="http://127.0.0.1:9/v1/metrics")
        print(json.dumps({"same": exporters.meter_provider is provider,
                          "owns": exporters.owns_provider}))
        """
    )
    assert result["same"] is True and result["owns"] is False
    assert "ignoring configure(endpoint)" in result["stderr"]


def test_metrics_endpoint_is_not_duplicated_by_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    provider, _ = in_memory()
    exporters = configure("prometheus", meter_provider=provider)
    assert exporters.exporters == ()  # the application's provider: nothing started here
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
