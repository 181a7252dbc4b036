"""The shipped Alertmanager configuration under amtool: valid, and routing every alert of the
rules, with its severity, to the receiver the README's table promises."""

from __future__ import annotations

import pytest
import yaml

from otel_jobtrack.generators import rules
from otel_jobtrack.generators.rules import alertmanager as am
from tests.backends import REPO_ROOT, amtool

SHIPPED = REPO_ROOT / "alerts" / am.ALERTMANAGER_FILE
ALERTS = {
    r["alert"]: r["labels"]["severity"]
    for g in yaml.safe_load((REPO_ROOT / "alerts" / rules.RULES_FILE).read_text())["groups"]
    for r in g["rules"]
    if "alert" in r
}


def test_amtool_accepts_the_shipped_configuration() -> None:
    checked = amtool("check-config", SHIPPED, check=True)
    assert "SUCCESS" in checked.stdout
    assert f"{len(rules.inhibitions(rules.DEFAULT_CONFIG))} inhibit rules" in checked.stdout


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_amtool_routes_each_alert_by_its_severity(alert: str) -> None:
    labels = [f"alertname={alert}", f"severity={ALERTS[alert]}", "job_name=x", "tenant=acme"]
    routed = amtool("config", "routes", "test", f"--config.file={SHIPPED}", *labels, check=True)
    assert routed.stdout.split() == [am.receiver_of(rules.DEFAULT_CONFIG, alert)]
    readme = (REPO_ROOT / "alerts" / am.ALERTMANAGER_README_FILE).read_text()
    assert f"| `{alert}` | {ALERTS[alert]} | `{routed.stdout.strip()}` |" in readme


def test_other_alerts_are_not_taken_by_the_jobtrack_route() -> None:
    routed = amtool(
        "config", "routes", "test", f"--config.file={SHIPPED}", "alertname=NodeDown",
        "severity=critical", check=True,
    )  # fmt: skip
    # Critical, yet not paged: the root's receiver (in your configuration, your root's).
    assert routed.stdout.split() == [am.TICKET_RECEIVER]
    tree = amtool("config", "routes", f"--config.file={SHIPPED}", check=True).stdout
    assert f'{{alertname=~"{rules.PREFIX}.+"}}' in tree
