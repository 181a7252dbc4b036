"""The shipped alert rules in a real Prometheus scraping a real instrumented workload.

The scenario (workloads, shortened windows, expected alerts) is in ``tests/rules_scenario.py``.
After about 30 s of normal history the anomaly jobs change behaviour and the "doomed" process
is killed; the test then waits for every expected alert and checks that nothing else ever
went pending or firing (Prometheus' ``ALERTS`` series keeps that history).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_jobtrack.generators import rules
from tests import rules_scenario as scenario
from tests.backends import PrometheusServer

pytestmark = [pytest.mark.backend, pytest.mark.slow]

SCRAPE_JOBS = {"main": "jobtrack-main", "doomed": "jobtrack-doomed"}
# Only our scrape jobs: Prometheus scrapes nothing else here, but the selector is exercised.
CONFIG = dataclasses.replace(scenario.E2E_CONFIG, selector='job=~"jobtrack-.*"')
EXPECTED = scenario.expected_alerts("e2e", SCRAPE_JOBS)


def _ever_active(prom: PrometheusServer) -> set[scenario.AlertKey]:
    """Every alert that was pending or firing at any time since Prometheus started."""
    return {scenario.alert_key(r["metric"]) for r in prom.query("max_over_time(ALERTS[10m])")}


def _ever_firing(prom: PrometheusServer) -> set[scenario.AlertKey]:
    return {
        scenario.alert_key(r["metric"])
        for r in prom.query('max_over_time(ALERTS{alertstate="firing"}[10m])')
    }


def test_shipped_rules_fire_for_unhealthy_jobs_only(
    prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    rules.write(tmp_path, CONFIG)
    switch_at = time.time() + scenario.HISTORY
    with scenario.workloads(switch_at) as procs:
        prom = prometheus_factory(
            scrape_targets={SCRAPE_JOBS[role]: [w.target] for role, w in procs.items()},
            rule_files=[tmp_path / rules.RULES_FILE],
        )
        prom.wait_for_targets_up()
        prom.wait_for_rule_evaluation()

        # Normal history; the process dies when the other jobs change behaviour. Until then
        # only the jobs unhealthy from their start may have alerted.
        scenario.sleep_until(switch_at)
        early = _ever_active(prom)
        procs["doomed"].kill()
        assert early <= scenario.unhealthy_from_start("e2e"), early

        deadline = time.monotonic() + scenario.FIRING_DEADLINE
        firing: set[scenario.AlertKey] = set()
        while time.monotonic() < deadline and not EXPECTED.issubset(firing):
            firing = _ever_firing(prom)
            time.sleep(0.5)
        missing = sorted(EXPECTED - firing)
        assert not missing, f"never fired: {missing}\n{prom.log_tail(20)}"

        # Noise: nothing else went even pending, at any time (healthy jobs, healthy tenants
        # of unhealthy jobs, the live target), and the rules evaluated without errors.
        assert _ever_active(prom) - EXPECTED == set()
        assert not [
            (r["name"], r["lastError"])
            for g in prom.rules()
            for r in g["rules"]
            if r.get("health") != "ok"
        ]

        # Labels and annotations as an on-call person receives them.
        active = {scenario.alert_key(a["labels"]): a for a in prom.alerts()}
        failing = active[(rules.RUN_FAILURES, "e2e.failing.schedule", "acme")]
        assert failing["state"] == "firing"
        assert failing["labels"]["severity"] == CONFIG.severities[rules.RUN_FAILURES]
        notes = failing["annotations"]
        assert "e2e.failing.schedule" in notes["description"]
        assert "tenant acme" in notes["description"]
        assert "100%" in notes["description"]
        assert notes["runbook_url"] == f"{CONFIG.runbook_url}#jobtrackrunfailures"
        assert notes["dashboard_url"].startswith(
            f"{CONFIG.grafana_url}/d/{rules.SCHEDULE_DASHBOARD_UID}?"
        )
        missed = active[(rules.MISSED_RUN, "e2e.doomed.cron", "system")]
        assert missed["annotations"]["dashboard_url"].startswith(
            f"{CONFIG.grafana_url}/d/{rules.CRON_DASHBOARD_UID}?"
        )
