"""The /metrics endpoint against a real Prometheus, real promtool and prometheus_client's parser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_jobtrack import make_metrics_wsgi_app, start_metrics_server, track_run
from tests.backends import PrometheusServer, free_port, promtool
from tests.helpers import exposition

pytestmark = pytest.mark.backend


@pytest.fixture
def endpoint() -> Iterator[str]:
    port = free_port()
    server, thread = start_metrics_server(port=port, addr="127.0.0.1")
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _workload() -> None:
    for tenant, resources in [("acme", 3), ("globex", 0), (None, 7)]:
        for _ in range(3):
            with track_run("billing.schedule_invoices", kind="schedule", tenant=tenant) as run:
                run.add_resources(resources)
    for _ in range(2):
        try:
            with track_run("billing.schedule_invoices", kind="schedule", tenant="umbrella"):
                raise ConnectionError("down")
        except ConnectionError:
            pass
    with track_run("billing.cron", kind="cron", every=60, grace=30) as run:
        run.mark_limited()


def _by_labels(result: list[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"][k] for k in keys): float(r["value"][1]) for r in result}


def test_real_prometheus_scrapes_the_contract(
    endpoint: str, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    _workload()
    prom = prometheus_factory(scrape_targets={"jobs": [endpoint]})
    prom.wait_for_targets_up()
    runs = prom.wait_for('jobtrack_runs_total{job="jobs"} > 0', lambda r: len(r) == 5)
    assert _by_labels(runs, "job_name", "tenant", "state") == {
        ("billing.schedule_invoices", "acme", "success"): 3,
        ("billing.schedule_invoices", "globex", "success"): 3,
        ("billing.schedule_invoices", "system", "success"): 3,
        ("billing.schedule_invoices", "umbrella", "failure"): 2,
        ("billing.cron", "system", "limited"): 1,
    }
    # The other states exist at 0 from the first run on: a first failure is an increase.
    zeros = prom.query('jobtrack_runs_total{job="jobs"} == 0')
    assert len(zeros) == 5 * 2
    resources = _by_labels(prom.query("jobtrack_resources_total"), "job_name", "tenant")
    assert resources[("billing.schedule_invoices", "acme")] == 9
    assert resources[("billing.schedule_invoices", "globex")] == 0  # ran, touched nothing
    assert resources[("billing.schedule_invoices", "system")] == 21
    count = prom.query_value(
        'sum(jobtrack_run_duration_seconds_count{job_name="billing.schedule_invoices"})'
    )
    assert count == 11
    p99 = prom.query_value(
        "histogram_quantile(0.99, sum by (le) (jobtrack_run_duration_seconds_bucket))"
    )
    assert p99 is not None and 0 < p99 <= 0.005
    assert prom.query_value('jobtrack_job_expected_interval_seconds{job_name="billing.cron"}') == 60
    last = prom.query_value('jobtrack_last_run_timestamp_seconds{tenant="umbrella"}')
    assert last is not None and abs(last - time.time()) < 60
    # Target labels stay Prometheus' own: nothing of ours got renamed to exported_*.
    names = prom.label_names('{__name__=~"jobtrack_.*"}')
    assert not [n for n in names if n.startswith("exported_")]
    assert {"kind", "job_name", "tenant", "state", "job", "instance"} <= set(names)


def test_promtool_and_parser_accept_the_exposition_with_strange_tenants() -> None:
    for tenant in ['quo"te', "new\nline", "back\\slash", "Zürich ☃", "x" * 500, 12, "\udcff"]:
        with track_run("odd", kind="resource", tenant=tenant):
            pass
    _workload()
    text = exposition()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "jobtrack_runs",
        "jobtrack_run_duration_seconds",
        "jobtrack_resources",
        "jobtrack_last_run_timestamp_seconds",
        "jobtrack_runs_in_progress",
    } <= families
    checked = promtool("check", "metrics", input=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


def test_wsgi_app_serves_the_same_families() -> None:
    _workload()
    app = make_metrics_wsgi_app()
    status: list[str] = []
    body = b"".join(
        app(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""},
            lambda s, h: status.append(s),
        )
    )
    assert status[0].startswith("200")
    assert b'jobtrack_runs_total{job_name="billing.cron",kind="cron"' in body


def test_server_defaults_follow_the_otel_prometheus_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    monkeypatch.delenv("OTEL_EXPORTER_PROMETHEUS_HOST", raising=False)
    server, _thread = start_metrics_server()
    try:
        assert server.server_address[0] in ("127.0.0.1", "::1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"jobtrack_runs_in_progress" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "http")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        start_metrics_server()


def test_demo_serves_metrics_that_prometheus_scrapes(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_jobtrack.tools.cli",
            "demo",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--cron-interval",
            "0.3",
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        assert f"http://127.0.0.1:{port}/metrics" in first
        prom = prometheus_factory(scrape_targets={"demo": [f"127.0.0.1:{port}"]})
        prom.wait_for_targets_up()
        prom.wait_for(
            "count(count by (tenant) (jobtrack_runs_total{job_name="
            '"demo.billing.tenants.schedule_invoices"}))',
            lambda r: bool(r) and float(r[0]["value"][1]) == 6,
            timeout=30,
        )
        for promql in [
            'jobtrack_runs_total{kind="cron",tenant="system",state="success"}',
            'jobtrack_runs_total{state="failure"}',
            'jobtrack_runs_total{state="limited"}',
            'jobtrack_resources_total{kind="schedule",tenant="initech",'
            'job_name="demo.billing.tenants.schedule_invoices"} == 0',
            'jobtrack_resources_total{kind="schedule",tenant="system"}',
            "jobtrack_job_expected_interval_seconds",
        ]:
            prom.wait_for(promql, timeout=30)
        noisy = prom.query_value(
            'sum(jobtrack_resources_total{tenant="hooli",kind="schedule",'
            'job_name="demo.billing.tenants.schedule_invoices"})'
        )
        quiet = prom.query_value(
            'sum(jobtrack_resources_total{tenant="acme",kind="schedule",'
            'job_name="demo.billing.tenants.schedule_invoices"})'
        )
        assert noisy is not None and quiet is not None and noisy > 4 * quiet
        demo.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        out, err = demo.communicate(timeout=20)
        assert demo.returncode == 0, err
        assert "stopped after" in out
        assert "Traceback" not in err
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_demo_duration_bounds_the_run() -> None:
    port = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_jobtrack.tools.cli",
            "demo",
            "--port",
            str(port),
            "--duration",
            "1",
            "--cron-interval",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stopped after" in result.stdout
    assert time.monotonic() - started < 30


async def test_asgi_app_serves_the_exposition() -> None:
    from otel_jobtrack import make_metrics_asgi_app

    _workload()
    app = make_metrics_asgi_app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"jobtrack_resources_total" in body
