"""Smoke tests of the real-backend harness: each backend starts, ingests and answers."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backends import (
    BIN_DIR,
    AlertmanagerServer,
    ExpositionServer,
    PrometheusServer,
    PushgatewayServer,
    VictoriaMetricsServer,
    WebhookReceiver,
    amtool,
    http_request,
    promtool,
)

pytestmark = pytest.mark.backend

SMOKE_TEXT = "# HELP smoke_total Smoke counter.\n# TYPE smoke_total counter\nsmoke_total 3\n"


def test_binaries_installed(backend_bins: dict[str, Path]) -> None:
    assert set(backend_bins) == {
        "prometheus",
        "promtool",
        "pushgateway",
        "victoria-metrics",
        "vmalert",
        "vmagent",
        "vmalert-tool",
        "alertmanager",
        "amtool",
    }
    for path in backend_bins.values():
        assert path.parent == BIN_DIR and path.exists()
    assert "2.53" in promtool("--version", check=True).stdout


def test_promtool_check_metrics() -> None:
    ok = promtool("check", "metrics", input=SMOKE_TEXT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = promtool("check", "metrics", input="smoke_total{ 3\n")
    assert bad.returncode != 0


def test_prometheus_scrapes_evaluates_rules_and_reloads(
    tmp_path: Path,
    exposition_server: ExpositionServer,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    rules = tmp_path / "smoke.rules.yml"
    rules.write_text(
        "groups:\n"
        "- name: smoke\n"
        "  rules:\n"
        "  - record: job:smoke_total:sum\n"
        "    expr: sum by (job) (smoke_total)\n"
        "  - alert: SmokeHigh\n"
        "    expr: smoke_total > 1\n"
        "    labels: {severity: page}\n"
    )
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    exposition_server.text = SMOKE_TEXT
    # One job by host:port, one by full URL (sets scheme and metrics path).
    prom = prometheus_factory(
        scrape_targets={"test": [exposition_server.target], "smoke": [exposition_server.url]},
        rule_files=[rules],
    )
    prom.wait_for_targets_up()
    result = prom.wait_for('smoke_total{job="test"}')
    assert result[0]["metric"] == {
        "__name__": "smoke_total",
        "job": "test",
        "instance": exposition_server.target,
    }
    assert prom.query_value('smoke_total{job="test"}') == 3
    assert {s["job"] for s in prom.series("smoke_total")} == {"test", "smoke"}
    assert exposition_server.scrapes >= 2

    prom.wait_for('job:smoke_total:sum{job="smoke"}', lambda r: bool(r) and r[0]["value"][1] == "3")
    deadline = time.monotonic() + 15
    while len(prom.alerts()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    alerts = prom.alerts()
    assert sorted(a["labels"]["job"] for a in alerts) == ["smoke", "test"]
    assert {(a["labels"]["alertname"], a["state"]) for a in alerts} == {("SmokeHigh", "firing")}
    assert [g["name"] for g in prom.rules()] == ["smoke"]

    # Rule changes apply synchronously on reload. (New scrape targets would take ~5 s:
    # Prometheus throttles service-discovery updates.)
    prom.reload(rule_files=[])
    assert prom.rules() == []


def test_pushgateway_push_with_urllib(pushgateway: PushgatewayServer) -> None:
    status, _ = http_request(
        "PUT",
        pushgateway.url + "/metrics/job/smoke/instance/box1",
        data="# TYPE smoke_pushed_total counter\nsmoke_pushed_total 7\n",
    )
    assert status == 200
    text = pushgateway.metrics_text()
    assert 'smoke_pushed_total{instance="box1",job="smoke"} 7' in text
    assert [g["labels"]["job"] for g in pushgateway.groups()] == ["smoke"]
    pushgateway.delete("smoke", {"instance": "box1"})
    assert "smoke_pushed_total" not in pushgateway.metrics_text()


def test_victoria_metrics_import_and_query(victoria_metrics: VictoriaMetricsServer) -> None:
    victoria_metrics.import_prometheus('smoke_imported_total{env="t"} 5\n')
    result = victoria_metrics.wait_for("smoke_imported_total")
    assert result[0]["metric"] == {"__name__": "smoke_imported_total", "env": "t"}
    assert victoria_metrics.query_value("smoke_imported_total") == 5
    assert "smoke_imported_total" in victoria_metrics.metric_names()


def test_victoria_metrics_otlp_prometheus_naming(victoria_metrics: VictoriaMetricsServer) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.metric_exporter")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=victoria_metrics.otlp_url), export_interval_millis=60_000
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "smoke-svc"})
    )
    counter = provider.get_meter("smoke").create_counter("smoke.requests", unit="{request}")
    counter.add(3, {"http.route": "/x"})
    provider.shutdown()  # flushes the export

    (series,) = victoria_metrics.wait_for("smoke_requests_total")
    labels = series["metric"]
    assert series["value"][1] == "3"
    assert labels["__name__"] == "smoke_requests_total"
    assert labels["http_route"] == "/x"
    # Resource attributes become labels (dots -> underscores); VM adds no job/instance.
    assert labels["service_name"] == "smoke-svc"
    assert "service_instance_id" in labels
    assert "job" not in labels and "instance" not in labels


def test_servers_as_context_managers(tmp_path: Path) -> None:
    with PushgatewayServer(workdir=tmp_path / "pg") as pg:
        assert pg.running
        proc = pg.proc
    assert not pg.running and proc is not None and proc.returncode is not None


SMOKE_ALERTMANAGER: dict[str, Any] = {
    "route": {
        "receiver": "chat",
        "group_by": ["service"],
        "group_wait": "0s",
        "group_interval": "1s",
        "routes": [{"matchers": ['severity="page"'], "receiver": "pager"}],
    },
    "inhibit_rules": [
        {
            "source_matchers": ['alertname="HostDown"'],
            "target_matchers": ['alertname="ServiceDown"'],
            "equal": ["host"],
        }
    ],
    "receivers": [
        {"name": name, "webhook_configs": [{"url": "", "send_resolved": True}]}
        for name in ("chat", "pager")
    ],
}


def _smoke_alertmanager_config(webhook: WebhookReceiver) -> dict[str, Any]:
    """Two receivers posting to the webhook, each under its own path."""
    config = copy.deepcopy(SMOKE_ALERTMANAGER)
    for receiver in config["receivers"]:
        receiver["webhook_configs"][0]["url"] = webhook.url(receiver["name"])
    return config


def test_amtool_checks_configs_and_routes(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump(_smoke_alertmanager_config(webhook_receiver)))
    assert amtool("check-config", good).returncode == 0
    routed = amtool("config", "routes", "test", f"--config.file={good}", "severity=page")
    assert routed.stdout.strip() == "pager", routed.stdout + routed.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("route: {receiver: nobody}\nreceivers: []\n")
    checked = amtool("check-config", bad)
    assert checked.returncode != 0 and "nobody" in checked.stdout + checked.stderr


def test_alertmanager_routes_inhibits_and_resolves(
    alertmanager_factory: Callable[..., AlertmanagerServer],
    webhook_receiver: WebhookReceiver,
    prometheus_factory: Callable[..., PrometheusServer],
    exposition_server: ExpositionServer,
    tmp_path: Path,
) -> None:
    am = alertmanager_factory(_smoke_alertmanager_config(webhook_receiver))
    # Posted directly: the cause and its effect on the same host, and an unrelated page.
    am.post_alerts(
        [
            {"labels": {"alertname": "HostDown", "host": "h1", "severity": "page"}},
            {"labels": {"alertname": "ServiceDown", "host": "h1", "service": "api"}},
            {"labels": {"alertname": "ServiceDown", "host": "h2", "service": "web"}},
        ]
    )
    webhook_receiver.wait_for(lambda got: len(got) >= 2, what="two notifications")
    (inhibited,) = am.alerts(inhibited=True, active=False)
    assert inhibited["labels"]["host"] == "h1" and inhibited["status"]["state"] == "suppressed"
    assert inhibited["status"]["inhibitedBy"]

    # A Prometheus alert reaches it, and its end arrives as a resolved notification.
    rules = tmp_path / "smoke.rules.yml"
    rules.write_text(
        "groups:\n- name: smoke\n  rules:\n  - alert: SmokeHigh\n    expr: smoke_value > 1\n"
        "    labels: {severity: page, service: smoke}\n"
    )
    exposition_server.text = "smoke_value 3\n"
    prom = prometheus_factory(
        scrape_targets=[exposition_server.target], rule_files=[rules], alertmanagers=[am.target]
    )
    prom.wait_for_targets_up()

    def smoke(status: str) -> Callable[[list[tuple[str, Any]]], bool]:
        return lambda got: any(
            path == "/pager" and body["groupLabels"] == {"service": "smoke"}
            and body["status"] == status
            for path, body in got
        )  # fmt: skip

    webhook_receiver.wait_for(smoke("firing"), what="SmokeHigh firing")
    exposition_server.text = "smoke_value 0\n"
    webhook_receiver.wait_for(smoke("resolved"), what="SmokeHigh resolved")
    by_group = {
        (path, tuple(sorted(body["groupLabels"].items())), body["status"])
        for path, body in webhook_receiver.received
    }
    assert by_group == {
        ("/chat", (("service", "web"),), "firing"),
        ("/pager", (), "firing"),
        ("/pager", (("service", "smoke"),), "firing"),
        ("/pager", (("service", "smoke"),), "resolved"),
    }
