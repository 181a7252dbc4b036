"""The shipped rules and dashboards on the scale-out path: VictoriaMetrics, vmagent, vmalert.

The scenario of ``tests/rules_scenario.py`` (the one the Prometheus end-to-end test runs),
twice at once, into one single-node VictoriaMetrics:

- workloads whose job names start with ``e2e.`` serve ``/metrics``, scraped by a real vmagent
  that remote-writes into VictoriaMetrics;
- workloads whose job names start with ``otlp.`` export over OTLP straight into
  VictoriaMetrics (no scrape, so no ``job``/``instance``/``up``).

A real vmalert evaluates the shipped rules (generated with the scenario's short windows)
against VictoriaMetrics and writes its recordings and ``ALERTS`` back through remote write.
At the switch the anomaly jobs change behaviour and both "doomed" processes are killed. The
same alerts must fire as under Prometheus (for the OTLP workloads: all but the down scrape
target), read from vmalert's API; nothing else may go even pending (but for what
:func:`~tests.rules_scenario.tolerated_alerts` explains); and every dashboard panel must return
data for each path on its own (its ``job_name`` variable set to the prefix).

VictoriaMetrics is flushed every 0.25 s while the test runs (see
:meth:`~tests.backends.VictoriaMetricsServer.flushing`): the scenario squeezes an hour's
window into 5 s, and VictoriaMetrics' few seconds from ingestion to search would be a window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_jobtrack.generators import rules
from otel_jobtrack.generators.dashboards import CRON_UID, SCHEDULE_UID
from tests import rules_scenario as scenario
from tests.backends import VictoriaMetricsServer, VMAgentServer, VMAlertServer
from tests.dashboard_queries import panels_without_data

pytestmark = [pytest.mark.backend, pytest.mark.slow]

SCRAPE_JOBS = {"main": "jobtrack-main", "doomed": "jobtrack-doomed"}
CONFIG = scenario.E2E_CONFIG
"""No selector: the OTLP series carry no ``job`` label to select on."""
EXPECTED_SCRAPED = scenario.expected_alerts("e2e", SCRAPE_JOBS)
EXPECTED_OTLP = scenario.expected_alerts("otlp", None)
EXPECTED = EXPECTED_SCRAPED | EXPECTED_OTLP
TOLERATED = scenario.tolerated_alerts("otlp", None)
EVAL_DELAY = 1.0
"""vmalert evaluates this many seconds in the past, so that what vmagent and the OTLP
exporters sent has arrived (see :class:`~tests.backends.VMAlertServer`)."""
HISTORY = scenario.HISTORY + EVAL_DELAY + 2.0
"""Longer than under Prometheus by the evaluation delay and the start of three servers."""


def _firing_now(vmalert: VMAlertServer) -> set[scenario.AlertKey]:
    return {scenario.alert_key(a["labels"]) for a in vmalert.alerts() if a["state"] == "firing"}


def _ever(vm: VictoriaMetricsServer, state: str = "") -> set[scenario.AlertKey]:
    """Alerts that were active (in ``state``, if given) at any time: vmalert's ALERTS series."""
    matcher = f'{{alertstate="{state}"}}' if state else ""
    return {
        scenario.alert_key(r["metric"]) for r in vm.query(f"max_over_time(ALERTS{matcher}[10m])")
    }


def _wait_for_targets_up(agent: VMAgentServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    up: dict[str, bool] = {}
    while time.monotonic() < deadline:
        up = agent.targets_up()
        if len(up) == len(SCRAPE_JOBS) and all(up.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"vmagent targets not up after {timeout}s: {up}\n{agent.log_tail(20)}")


def test_scale_out_path_fires_the_same_alerts_and_feeds_the_dashboards(
    victoria_metrics_factory: Callable[..., VictoriaMetricsServer],
    vmagent_factory: Callable[..., VMAgentServer],
    vmalert_factory: Callable[..., VMAlertServer],
    tmp_path: Path,
) -> None:
    rules.write(tmp_path, CONFIG)
    vm = victoria_metrics_factory()
    start = time.time()
    switch_at = start + HISTORY
    with (
        vm.flushing(),
        scenario.workloads(switch_at, "e2e") as scraped,
        scenario.workloads(switch_at, "otlp", otlp_endpoint=vm.otlp_url) as pushed,
    ):
        agent = vmagent_factory(
            scrape_targets={SCRAPE_JOBS[role]: [w.target] for role, w in scraped.items()},
            remote_write_url=vm.remote_write_url,
        )
        vmalert = vmalert_factory(
            rule_files=[tmp_path / rules.RULES_FILE],
            datasource_url=vm.url,
            remote_write_url=vm.url,
            eval_delay=f"{EVAL_DELAY:g}s",
        )
        _wait_for_targets_up(agent)
        vmalert.wait_for_rule_evaluation()

        # Until the switch only the jobs unhealthy from their start may have alerted.
        scenario.sleep_until(switch_at)
        early = _ever(vm)
        scraped["doomed"].kill()
        pushed["doomed"].kill()
        allowed = scenario.unhealthy_from_start("e2e") | scenario.unhealthy_from_start("otlp")
        assert early <= allowed, early

        # vmalert's API shows what fires now; collect until every expected alert was seen.
        deadline = time.monotonic() + scenario.FIRING_DEADLINE + EVAL_DELAY
        seen: set[scenario.AlertKey] = set()
        while time.monotonic() < deadline and not EXPECTED.issubset(seen):
            seen |= _firing_now(vmalert)
            time.sleep(0.5)
        missing = sorted(EXPECTED - seen)
        assert not missing, f"never fired under vmalert: {missing}\n{vmalert.log_tail(20)}"
        # The ALERTS series vmalert wrote back tell the same, and nothing else was ever even
        # pending: not the healthy jobs, not the healthy tenants of unhealthy jobs.
        assert _ever(vm, "firing") >= EXPECTED
        noise = _ever(vm) - EXPECTED - TOLERATED
        assert not noise, f"went pending or firing without a reason: {sorted(noise)}"
        assert not [
            (r["name"], r.get("lastError"))
            for g in vmalert.rules()
            for r in g["rules"]
            if r.get("health") != "ok"
        ]

        # Labels and annotations as an on-call person receives them.
        active = {scenario.alert_key(a["labels"]): a for a in vmalert.alerts()}
        failing = active[(rules.RUN_FAILURES, "otlp.failing.schedule", "acme")]
        assert failing["labels"]["severity"] == CONFIG.severities[rules.RUN_FAILURES]
        assert "tenant acme" in failing["annotations"]["description"]
        assert failing["annotations"]["dashboard_url"].startswith(
            f"{CONFIG.grafana_url}/d/{rules.SCHEDULE_DASHBOARD_UID}?"
        )

        # The recordings vmalert wrote back are in VictoriaMetrics, for both paths.
        window_counts = rules.Names.for_config(CONFIG).runs_in_window
        recorded = vm.query(f"count by (job_name) ({window_counts})")
        assert {"e2e.failing.schedule", "otlp.failing.schedule"} <= {
            r["metric"]["job_name"] for r in recorded
        }

        # Every dashboard panel shows data for each path on its own.
        for prefix in ("e2e", "otlp"):
            chosen = {"job_name": f"{prefix}[.].*"}
            for uid in (CRON_UID, SCHEDULE_UID):
                empty = panels_without_data(vm, uid, start, chosen)
                assert not empty, f"{prefix} workloads, dashboard {uid}: {empty}"
