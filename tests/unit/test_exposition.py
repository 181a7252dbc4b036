"""The fast text renderer writes exactly the bytes prometheus_client would."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_jobtrack import set_cardinality_limits, track_run
from otel_jobtrack._core import errors
from otel_jobtrack._core.store import DEFAULT_MAX_TENANTS_PER_JOB
from otel_jobtrack.exporters.prometheus.app import JobtrackCollector, make_metrics_wsgi_app
from otel_jobtrack.exporters.prometheus.render import render_text


def _collector_text() -> bytes:
    registry = CollectorRegistry()
    registry.register(JobtrackCollector())
    return generate_latest(registry)


def _varied_workload() -> None:
    set_cardinality_limits(max_tenants_per_job=4)
    tenants: list[object] = ["acme", 'quo"te', "back\\slash", None, "Zürich ☃", 12, "x" * 300]
    for n, tenant in enumerate(tenants * 3):
        try:
            with track_run(
                'odd "job" \\ name',
                kind="schedule",
                tenant=tenant,
                every=60,
                grace=5,
                max_runtime=1e9,
            ) as run:
                run.add_resources(n * 1_234_567 if n % 2 else 0.5)
                if n % 3 == 0:
                    raise KeyError(n)
                if n % 3 == 1:
                    run.mark_limited()
        except KeyError:
            pass
    errors.instrumentation_error('a "quoted" place')
    errors.export_error("otlp", None)


def test_render_is_byte_identical_to_generate_latest() -> None:
    try:
        _varied_workload()
        with track_run("still.running", kind="batch", tenant="acme"):
            assert render_text() == _collector_text()
    finally:
        set_cardinality_limits(max_tenants_per_job=DEFAULT_MAX_TENANTS_PER_JOB)
    assert render_text() == _collector_text()


def test_empty_store_renders_headers_only() -> None:
    assert render_text() == _collector_text()


def _get(
    app: Any, accept: str = "", encoding: str = "", query: str = ""
) -> tuple[dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status
        captured["headers"] = dict(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/metrics",
        "QUERY_STRING": query,
        "HTTP_ACCEPT": accept,
        "HTTP_ACCEPT_ENCODING": encoding,
    }
    body = b"".join(app(environ, start_response))
    assert captured["status"].startswith("200")
    return captured["headers"], body


def _families(text: str) -> dict[str, list[Any]]:
    return {
        f.name: f.samples
        for f in text_string_to_metric_families(text)
        if f.name.startswith("jobtrack_")
    }


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_app_serves_the_same_families_as_prometheus_client(encoding: str) -> None:
    _varied_workload()
    set_cardinality_limits(max_tenants_per_job=DEFAULT_MAX_TENANTS_PER_JOB)
    headers, body = _get(make_metrics_wsgi_app(), encoding=encoding)
    if encoding:
        assert headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert _families(text) == _families(generate_latest(REGISTRY).decode())
    assert "python_gc_objects_collected_total" in text  # the rest of the registry is kept
    assert text.count("# TYPE jobtrack_runs_total counter") == 1


def test_openmetrics_and_name_filters_fall_back_to_prometheus_client() -> None:
    with track_run("om", kind="cron"):
        pass
    app = make_metrics_wsgi_app()
    headers, body = _get(app, accept="application/openmetrics-text; version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert (
        b'jobtrack_runs_total{job_name="om",kind="cron",state="success",tenant="system"} 1.0'
        in body
    )
    _, body = _get(app, query="name[]=jobtrack_runs_total")
    assert b"jobtrack_runs_total{" in body and b"jobtrack_resources_total" not in body
