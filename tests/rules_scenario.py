"""The alert rules' end-to-end scenario, shared by the Prometheus and VictoriaMetrics tests.

Workload processes run ``tests/workloads/rules_workload.py``: "main" with healthy and
unhealthy jobs, and "doomed", which the test kills when the anomaly jobs change behaviour.
The rules are generated from the same settings object as ``alerts/``, with windows, lookbacks
and ``for:`` shortened to seconds (a one-second evaluation interval, a 5 s alert window, a 15 s
baseline), so that :data:`HISTORY` seconds of normal behaviour are enough for the baselines.
:func:`expected_alerts` says which alerts must fire; every other alert must stay silent.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from otel_jobtrack.generators import rules
from tests.backends import free_port, http_request

WORKLOAD = Path(__file__).parent / "workloads" / "rules_workload.py"
HISTORY = 30.0
"""Seconds of normal behaviour before the switch: the 25 s the baselines need, plus margin."""
FIRING_DEADLINE = 45.0
"""Seconds after the switch within which every expected alert must have fired."""

E2E_CONFIG = dataclasses.replace(
    rules.DEFAULT_CONFIG,
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

AlertKey = tuple[str, str, str]
"""(alertname, job_name or scrape job, tenant or the other identifying label)."""


def alert_key(labels: Mapping[str, str]) -> AlertKey:
    name = labels["alertname"]
    if "job_name" in labels:
        return (name, labels["job_name"], labels.get("tenant", ""))
    return (name, labels.get("job", ""), labels.get("where", labels.get("exporter", "")))


def unhealthy_from_start(prefix: str) -> set[AlertKey]:
    """The alerts that may fire before the switch: jobs that are unhealthy from their start."""
    return {
        (rules.RUN_FAILURES, f"{prefix}.failing.schedule", "acme"),
        (rules.RESOURCES_ZERO, f"{prefix}.empty.schedule", "acme"),
        (rules.RESOURCES_ZERO, f"{prefix}.empty.cron", "system"),
        (rules.RUN_STUCK, f"{prefix}.stuck.batch", "acme"),
    }


def expected_alerts(prefix: str, scrape_jobs: Mapping[str, str] | None) -> set[AlertKey]:
    """What must fire for the workloads whose job names start with ``prefix``.

    ``scrape_jobs`` maps role -> scrape job for scraped workloads; ``None`` when they are fed
    over OTLP: then there is no scrape target to be down, and no ``job`` label.
    """

    def job(what: str) -> str:
        return f"{prefix}.{what}"

    expected = unhealthy_from_start(prefix) | {
        (rules.RUNS_LIMITED, job("limited.schedule"), "acme"),
        (rules.RESOURCE_VOLUME_HIGH, job("spiky.schedule"), "whale"),
        (rules.RESOURCE_VOLUME_LOW, job("shrinking.resource"), "acme"),
        (rules.DURATION_DRIFT, job("slow.resource"), ""),
        (rules.RUNS_BELOW_EXPECTED, job("slowing.cron"), "system"),
        (rules.MISSED_RUN, job("doomed.cron"), "system"),
        (rules.MISSED_RUN, job("doomed.schedule"), "acme"),
    }
    misuse = "current_run() outside a tracked run"
    if scrape_jobs is None:
        expected.add((rules.INSTRUMENTATION_ERRORS, "", misuse))
    else:
        expected.add((rules.EXPORTER_DOWN, scrape_jobs["doomed"], ""))
        expected.add((rules.INSTRUMENTATION_ERRORS, scrape_jobs["main"], misuse))
    return expected


def tolerated_alerts(prefix: str, scrape_jobs: Mapping[str, str] | None) -> set[AlertKey]:
    """Alerts that may fire but need not, for the workloads whose job names start with
    ``prefix`` (same arguments as :func:`expected_alerts`).

    Over OTLP a killed process leaves no staleness marker: its counters stay at their last
    value until the backend considers them stale (Prometheus: its 5-minute lookback;
    VictoriaMetrics: about five sample intervals, here a few seconds). Meanwhile its jobs
    run less than usual, and ``JobTrackRunsBelowExpected`` may say so. A scrape ends those
    series at once (``JobTrackExporterDown`` tells instead), so scraped workloads have none.
    """
    if scrape_jobs is not None:
        return set()
    return {
        (rules.RUNS_BELOW_EXPECTED, f"{prefix}.doomed.cron", "system"),
        (rules.RUNS_BELOW_EXPECTED, f"{prefix}.doomed.schedule", "acme"),
    }


@dataclass
class Workload:
    """One running workload process and the ``host:port`` of its ``/metrics``."""

    role: str
    proc: subprocess.Popen[bytes]
    target: str

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def start_workload(
    role: str,
    switch_at: float,
    prefix: str = "e2e",
    otlp_endpoint: str | None = None,
    extra_args: Sequence[str] = (),
) -> Workload:
    """Start a workload process and wait until it serves ``/metrics``."""
    port = free_port()
    cmd = [
        sys.executable,
        str(WORKLOAD),
        *("--port", str(port), "--role", role, "--switch-at", str(switch_at)),
        *("--prefix", prefix),
        *extra_args,
    ]
    if otlp_endpoint:
        cmd += ["--otlp-endpoint", otlp_endpoint]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{prefix} {role} workload exited with {proc.returncode}")
        try:
            status, _ = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
            if status == 200:
                return Workload(role, proc, f"127.0.0.1:{port}")
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{prefix} {role} workload did not serve /metrics within 20 s")


@contextmanager
def workloads(
    switch_at: float,
    prefix: str = "e2e",
    otlp_endpoint: str | None = None,
    roles: Sequence[str] = ("main", "doomed"),
    extra_args: Sequence[str] = (),
) -> Iterator[dict[str, Workload]]:
    """The workloads of one prefix ("main" and "doomed" unless told), killed on exit."""
    started: dict[str, Workload] = {}
    try:
        for role in roles:
            started[role] = start_workload(role, switch_at, prefix, otlp_endpoint, extra_args)
        yield started
    finally:
        for workload in started.values():
            if workload.proc.poll() is None:
                workload.kill()


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))
