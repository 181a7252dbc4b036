"""The shipped alert rules in a real Prometheus scraping a real instrumented workload.

The rules are generated from the same settings object as ``alerts/``, with windows, lookbacks
and ``for:`` shortened to seconds (a one-second evaluation interval, a 5 s alert window, a 15 s
baseline). Two workload processes run ``tests/workloads/rules_workload.py``: "main" with healthy
jobs and unhealthy ones, and "doomed", which the test kills. After about 30 s of normal history
the anomaly jobs change behaviour; the test then waits for every expected alert and checks that
nothing else ever went pending or firing (Prometheus' ``ALERTS`` series keeps that history).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_jobtrack.generators import rules
from tests.backends import PrometheusServer, free_port, http_request

pytestmark = [pytest.mark.backend, pytest.mark.slow]

WORKLOAD = Path(__file__).parent.parent / "workloads" / "rules_workload.py"
HISTORY = 30.0
"""Seconds of normal behaviour before the switch: the 25 s the baselines need, plus margin."""

E2E_CONFIG = dataclasses.replace(
    rules.DEFAULT_CONFIG,
    selector='job=~"jobtrack-.*"',
    interval="1s",
    rate_window="3s",
    alert_window="5s",
    baseline_window="15s",
    lookback="2m",
    default_grace_seconds=1.0,
    volume_min_resources=50.0,
    drift_min_increase_seconds=0.1,
    for_durations={name: "0s" for name in rules.ALERT_NAMES},
    kubernetes=False,
)

# (alertname, job_name or scrape job, tenant or other identifying label)
EXPECTED = {
    (rules.RUN_FAILURES, "e2e.failing.schedule", "acme"),
    (rules.RESOURCES_ZERO, "e2e.empty.schedule", "acme"),
    (rules.RUN_STUCK, "e2e.stuck.batch", "acme"),
    (rules.RUNS_LIMITED, "e2e.limited.schedule", "acme"),
    (rules.RESOURCE_VOLUME_HIGH, "e2e.spiky.schedule", "whale"),
    (rules.RESOURCE_VOLUME_LOW, "e2e.shrinking.resource", "acme"),
    (rules.DURATION_DRIFT, "e2e.slow.resource", ""),
    (rules.RUNS_BELOW_EXPECTED, "e2e.slowing.cron", "system"),
    (rules.MISSED_RUN, "e2e.doomed.cron", "system"),
    (rules.EXPORTER_DOWN, "jobtrack-doomed", ""),
    (rules.INSTRUMENTATION_ERRORS, "jobtrack-main", "current_run() outside a tracked run"),
}


def _key(labels: dict[str, str]) -> tuple[str, str, str]:
    name = labels["alertname"]
    if "job_name" in labels:
        return (name, labels["job_name"], labels.get("tenant", ""))
    return (name, labels.get("job", ""), labels.get("where", labels.get("exporter", "")))


def _start_workload(role: str, switch_at: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKLOAD),
            "--port",
            str(port),
            "--role",
            role,
            "--switch-at",
            str(switch_at),
        ],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{role} workload exited with {proc.returncode}")
        try:
            status, _ = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
            if status == 200:
                return proc, f"127.0.0.1:{port}"
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{role} workload did not serve /metrics within 20 s")


@pytest.fixture
def workloads() -> Iterator[dict[str, Any]]:
    switch_at = time.time() + HISTORY
    started: dict[str, Any] = {"switch_at": switch_at}
    try:
        for role in ("main", "doomed"):
            started[role] = _start_workload(role, switch_at)
        yield started
    finally:
        for role in ("main", "doomed"):
            if role in started:
                proc = started[role][0]
                proc.kill()
                proc.wait(10)


def _ever_active(prom: PrometheusServer) -> set[tuple[str, str, str]]:
    """Every alert that was pending or firing at any time since Prometheus started."""
    return {_key(r["metric"]) for r in prom.query("max_over_time(ALERTS[10m])")}


def _ever_firing(prom: PrometheusServer) -> set[tuple[str, str, str]]:
    return {
        _key(r["metric"]) for r in prom.query('max_over_time(ALERTS{alertstate="firing"}[10m])')
    }


def test_shipped_rules_fire_for_unhealthy_jobs_only(
    workloads: dict[str, Any],
    prometheus_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> None:
    rule_file = tmp_path / rules.RULES_FILE
    rules.write(tmp_path, E2E_CONFIG)
    doomed_proc, doomed_target = workloads["doomed"]
    prom = prometheus_factory(
        scrape_targets={
            "jobtrack-main": [workloads["main"][1]],
            "jobtrack-doomed": [doomed_target],
        },
        rule_files=[rule_file],
    )
    prom.wait_for_targets_up()
    prom.wait_for_rule_evaluation()

    # Normal history; the process dies when the other jobs change behaviour.
    time.sleep(max(0.0, workloads["switch_at"] - time.time()))
    doomed_proc.kill()

    deadline = time.monotonic() + 30
    firing: set[tuple[str, str, str]] = set()
    while time.monotonic() < deadline and not EXPECTED.issubset(firing):
        firing = _ever_firing(prom)
        time.sleep(0.5)
    missing = sorted(EXPECTED - firing)
    assert not missing, f"never fired: {missing}\n{prom.log_tail(20)}"

    # Noise: nothing else went even pending, at any time (healthy jobs, healthy tenants of
    # unhealthy jobs, the live target), and the rules evaluated without errors.
    assert _ever_active(prom) - EXPECTED == set()
    assert not [
        (r["name"], r["lastError"])
        for g in prom.rules()
        for r in g["rules"]
        if r.get("health") != "ok"
    ]

    # Labels and annotations as an on-call person receives them.
    active = {_key(a["labels"]): a for a in prom.alerts() if a["state"] == "firing"}
    failing = active[(rules.RUN_FAILURES, "e2e.failing.schedule", "acme")]
    assert failing["labels"]["severity"] == E2E_CONFIG.severities[rules.RUN_FAILURES]
    notes = failing["annotations"]
    assert "e2e.failing.schedule" in notes["description"]
    assert "tenant acme" in notes["description"]
    assert "100%" in notes["description"]
    assert notes["runbook_url"] == f"{E2E_CONFIG.runbook_url}#jobtrackrunfailures"
    assert notes["dashboard_url"].startswith(
        f"{E2E_CONFIG.grafana_url}/d/{rules.SCHEDULE_DASHBOARD_UID}?"
    )
    missed = active[(rules.MISSED_RUN, "e2e.doomed.cron", "system")]
    assert missed["annotations"]["dashboard_url"].startswith(
        f"{E2E_CONFIG.grafana_url}/d/{rules.CRON_DASHBOARD_UID}?"
    )
