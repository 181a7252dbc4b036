"""The shipped rules and Alertmanager configuration end to end: notifications as on-call
people receive them.

A real Prometheus evaluates the rules generated from the same settings as ``alerts/`` and
scrapes two instrumented workloads (``tests/workloads/rules_workload.py``, roles "paging" and
"doomed"); it sends its alerts to a real Alertmanager running the configuration generated
from the same settings as ``alerts/alertmanager/alertmanager.yml``, whose two receivers post
to a local webhook (one path each). Only the timings differ from the shipped files: a
one-second rule interval, no ``for:`` (one second for the exporter, so that one slow scrape
on a loaded machine is no outage), and one-second ``group_wait``/``group_interval``.

Three faults at once: one tenant of a scheduler stops running, a cron's run hangs, and the
"doomed" process is killed. Each must produce exactly one page for its job and tenant (the
killed process: one ``JobTrackExporterDown`` page for its target), the missed runs that the
hung run and the dead process cause must reach Alertmanager and be inhibited there, and the
scheduler's recovery must produce a resolved notification. Nothing else may be notified.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from otel_jobtrack.generators import rules
from otel_jobtrack.generators.rules import alertmanager as am
from tests import rules_scenario as scenario
from tests.backends import AlertmanagerServer, PrometheusServer, WebhookReceiver
from tests.workloads.rules_workload import HANG_FILE, STOP_FILE

pytestmark = [pytest.mark.backend, pytest.mark.slow]

PREFIX = "am"
SCRAPE_JOBS = {"paging": "jobtrack-paging", "doomed": "jobtrack-doomed"}
DEADLINE = 60.0
"""Seconds within which each expected notification must arrive (a loaded machine)."""
QUIET = 5.0
"""Seconds after the inhibited alerts reached Alertmanager during which nothing may be sent
for them: five of their groups' flushes (``group_interval`` 1 s)."""

Group = tuple[tuple[str, str], ...]
STOPPED: Group = (("job_name", f"{PREFIX}.stops.schedule"), ("tenant", "acme"))
STUCK: Group = (("job_name", f"{PREFIX}.stuck.cron"), ("tenant", "system"))
TARGETS: Group = ()
"""Alerts about a scrape target carry neither job_name nor tenant: one group."""
PAGED = {("/page", group) for group in (STOPPED, STUCK, TARGETS)}
"""The only (receiver path, group) that may be notified."""
INHIBITED = {  # (job_name, tenant) of a missed run -> the alert that must silence it
    (f"{PREFIX}.doomed.cron", "system"): rules.EXPORTER_DOWN,
    (f"{PREFIX}.doomed.schedule", "acme"): rules.EXPORTER_DOWN,
    (f"{PREFIX}.stuck.cron", "system"): rules.RUN_STUCK,
}


def e2e_config(webhook: WebhookReceiver) -> rules.RulesConfig:
    """The shipped settings with the test's timings and receivers."""
    return dataclasses.replace(
        rules.DEFAULT_CONFIG,
        interval="1s",
        for_durations={name: "0s" for name in rules.ALERT_NAMES} | {rules.EXPORTER_DOWN: "1s"},
        kubernetes=False,
        alertmanager_page_url=webhook.url("page"),
        alertmanager_ticket_url=webhook.url("ticket"),
        alertmanager_group_wait="1s",
        alertmanager_group_interval="1s",
        alertmanager_page_repeat_interval="1h",
        alertmanager_ticket_repeat_interval="1h",
    )


def _group(body: Mapping[str, Any]) -> Group:
    return tuple(sorted(body["groupLabels"].items()))


def _nothing_unexpected(received: list[tuple[str, Any]]) -> None:
    """Fail at once on a notification of another group (say, an inhibited missed run)."""
    unexpected = [(p, b) for p, b in received if (p, _group(b)) not in PAGED]
    assert not unexpected, f"unexpected notifications: {unexpected}"


def _notified(path: str, group: Group, status: str) -> Callable[[list[tuple[str, Any]]], bool]:
    def seen(got: list[tuple[str, Any]]) -> bool:
        _nothing_unexpected(got)
        return any(p == path and _group(b) == group and b["status"] == status for p, b in got)

    return seen


def _inhibited_missed_runs(
    alertmanager: AlertmanagerServer,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The missed runs Alertmanager holds as inhibited, by (job_name, tenant)."""
    return {
        (a["labels"]["job_name"], a["labels"]["tenant"]): a
        for a in alertmanager.alerts(inhibited=True, active=False)
        if a["labels"]["alertname"] == rules.MISSED_RUN
    }


def _wait(
    condition: Callable[[], bool], what: str, webhook: WebhookReceiver, timeout: float = DEADLINE
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        _nothing_unexpected(webhook.received)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_one_page_per_cause_inhibited_effects_and_a_resolved_recovery(
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    cfg = e2e_config(webhook_receiver)
    rules.write(tmp_path, cfg)
    alertmanager = alertmanager_factory((tmp_path / am.ALERTMANAGER_FILE).read_text())
    control = tmp_path / "control"
    control.mkdir()
    with scenario.workloads(
        time.time(), PREFIX, roles=("paging", "doomed"), extra_args=("--control-dir", str(control))
    ) as procs:
        targets = {role: w.target for role, w in procs.items()}
        prom = prometheus_factory(
            scrape_targets={SCRAPE_JOBS[role]: [t] for role, t in targets.items()},
            rule_files=[tmp_path / rules.RULES_FILE],
            alertmanagers=[alertmanager.target],
        )
        prom.wait_for_targets_up()
        prom.wait_for_rule_evaluation()
        # Every job and tenant has succeeded and its target is recorded.
        jobs = f'{{job_name=~"{PREFIX}\\\\..+"}}'
        for recorded in (rules.LAST_SUCCESS, rules.LAST_RUN_TARGET):
            prom.wait_for(
                f"count({recorded}{jobs})",
                lambda r: bool(r) and r[0]["value"][1] == "6",
                timeout=DEADLINE,
            )
        assert webhook_receiver.received == [], "healthy jobs notified"

        # The faults.
        (control / STOP_FILE).touch()
        (control / HANG_FILE).touch()
        procs["doomed"].kill()

        for group in (STOPPED, STUCK, TARGETS):
            webhook_receiver.wait_for(
                _notified("/page", group, "firing"), DEADLINE, f"a page for {group}"
            )
        # The effects reached Alertmanager and are held there, silenced by their cause.
        _wait(
            lambda: set(_inhibited_missed_runs(alertmanager)) == set(INHIBITED),
            f"Alertmanager to hold the missed runs of {sorted(INHIBITED)} as inhibited",
            webhook_receiver,
        )
        inhibited_since = time.monotonic()
        fingerprints = {
            a["fingerprint"]: a["labels"]["alertname"] for a in alertmanager.alerts(active=True)
        }
        for key, alert in _inhibited_missed_runs(alertmanager).items():
            assert alert["status"]["state"] == "suppressed"
            causes = {fingerprints.get(f) for f in alert["status"]["inhibitedBy"]}
            assert causes == {INHIBITED[key]}, (key, alert["status"])
        # ...and Prometheus fires them: the rules did their part.
        firing = {
            (r["metric"]["job_name"], r["metric"]["tenant"])
            for r in prom.query(f'ALERTS{{alertname="{rules.MISSED_RUN}", alertstate="firing"}}')
        }
        assert firing >= set(INHIBITED) | {(f"{PREFIX}.stops.schedule", "acme")}

        # Recovery: the scheduler picks its tenant again.
        (control / STOP_FILE).unlink()
        webhook_receiver.wait_for(
            _notified("/page", STOPPED, "resolved"), DEADLINE, "the resolved notification"
        )
        time.sleep(max(0.0, inhibited_since + QUIET - time.monotonic()))
        received = webhook_receiver.received
        still_inhibited = set(_inhibited_missed_runs(alertmanager))

    # Exactly one notification per cause, the recovery, and nothing else.
    assert sorted((p, _group(b), b["status"]) for p, b in received) == sorted(
        [
            ("/page", STOPPED, "firing"),
            ("/page", STOPPED, "resolved"),
            ("/page", STUCK, "firing"),
            ("/page", TARGETS, "firing"),
        ]
    ), received
    assert still_inhibited == set(INHIBITED)
    by_group = {(_group(b), b["status"]): b for _, b in received}
    for body in by_group.values():
        assert body["receiver"] == am.PAGE_RECEIVER

    (missed,) = by_group[STOPPED, "firing"]["alerts"]
    assert missed["labels"] | {"severity": "critical"} == {
        "alertname": rules.MISSED_RUN,
        "severity": "critical",
        "kind": "schedule",
        "job_name": f"{PREFIX}.stops.schedule",
        "tenant": "acme",
        # The target that reported its last run: what an exporter-down inhibition compares.
        "job": SCRAPE_JOBS["paging"],
        "instance": targets["paging"],
    }
    assert missed["annotations"]["runbook_url"].endswith("#jobtrackmissedrun")
    (recovered,) = by_group[STOPPED, "resolved"]["alerts"]
    assert recovered["status"] == "resolved" and recovered["labels"] == missed["labels"]

    (stuck,) = by_group[STUCK, "firing"]["alerts"]
    assert stuck["labels"]["alertname"] == rules.RUN_STUCK

    (down,) = by_group[TARGETS, "firing"]["alerts"]
    assert (down["labels"]["alertname"], down["labels"]["job"], down["labels"]["instance"]) == (
        rules.EXPORTER_DOWN,
        SCRAPE_JOBS["doomed"],
        targets["doomed"],
    )
    print(f"alertmanager end to end: {time.monotonic() - started:.1f}s")
