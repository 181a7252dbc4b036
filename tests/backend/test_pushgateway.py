"""Short-lived scripts push their runs to a real Pushgateway, which a real Prometheus scrapes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

from otel_jobtrack import configure, push_to_gateway, track_run
from otel_jobtrack._core import contract, errors
from otel_jobtrack.exporters import pipeline as config
from tests.backends import REPO_ROOT, PrometheusServer, PushgatewayServer

pytestmark = pytest.mark.backend


@pytest.fixture(autouse=True)
def reset_config() -> Iterator[None]:
    config.reset_for_tests()
    yield
    config.reset_for_tests()


SCRIPT = """
    import otel_jobtrack
    otel_jobtrack.configure("none", pushgateway="{url}", push_job="nightly-backup")
    with otel_jobtrack.track_run("nightly.backup", kind="cron", every=86400) as run:
        run.add_resources(3)
        {body}
    print("backup done")
"""


def run_script(url: str, body: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = textwrap.dedent(SCRIPT).format(url=url, body=body)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def group_labels(pushgateway: PushgatewayServer) -> list[dict[str, str]]:
    return sorted(
        (g["labels"] for g in pushgateway.groups()), key=lambda labels: sorted(labels.items())
    )


def test_scripts_push_at_exit_and_a_failure_keeps_the_last_success(
    pushgateway: PushgatewayServer, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    ok = run_script(pushgateway.url, "pass")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "backup done\n", "")
    failed = run_script(pushgateway.url, 'raise RuntimeError("disk full")')
    # The job's own outcome is untouched: same exception, same exit status, nothing else.
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.rstrip().endswith("RuntimeError: disk full")
    assert "otel-jobtrack" not in failed.stderr

    assert group_labels(pushgateway) == [
        {"job": "nightly-backup"},
        {"job": "nightly-backup", "state": "failure"},
        {"job": "nightly-backup", "state": "success"},
    ]

    prometheus = prometheus_factory(scrape_targets=[pushgateway.target], honor_labels=True)
    last = prometheus.wait_for(contract.LAST_RUN_TIMESTAMP, lambda r: len(r) == 2)
    by_state = {s["metric"]["state"]: float(s["value"][1]) for s in last}
    assert by_state["success"] < by_state["failure"]  # both kept, and comparable
    labels = {frozenset(s["metric"]) for s in last}
    assert labels == {frozenset({"__name__", "job", "kind", "job_name", "tenant", "state"})}
    assert {s["metric"]["job"] for s in last} == {"nightly-backup"}

    # The alert expression for a pushed job: age of the last success.
    (age,) = prometheus.query(f'time() - {contract.LAST_RUN_TIMESTAMP}{{state="success"}}')
    assert 0 < float(age["value"][1]) < 3600
    runs = prometheus.query(contract.RUNS_TOTAL)
    assert {s["metric"]["state"]: s["value"][1] for s in runs} == {"success": "1", "failure": "1"}
    # Each push replaced its own groups: the last process's resources (3), not a sum.
    assert prometheus.query_value(contract.RESOURCES_TOTAL) == 3
    assert prometheus.query_value(f"{contract.EXPECTED_INTERVAL}") == 86400


def test_push_now_with_an_instance_in_the_grouping_key(pushgateway: PushgatewayServer) -> None:
    with track_run("sync", kind="resource", tenant="acme") as run:
        run.add_resources(5)
    with track_run("sync", kind="resource", tenant="globex") as run:
        run.mark_limited()
    assert push_to_gateway(pushgateway.url, job="sync", grouping_key={"instance": "host1"})
    assert group_labels(pushgateway) == [
        {"instance": "host1", "job": "sync"},
        {"instance": "host1", "job": "sync", "state": "limited"},
        {"instance": "host1", "job": "sync", "state": "success"},
    ]
    text = pushgateway.metrics_text()
    assert (
        'jobtrack_runs_total{instance="host1",job="sync",job_name="sync",kind="resource",'
        'state="limited",tenant="globex"} 1' in text
    )
    assert (
        'jobtrack_resources_total{instance="host1",job="sync",job_name="sync",kind="resource",'
        'tenant="acme"} 5' in text
    )


def test_flush_pushes_and_nothing_is_pushed_before_any_run(
    pushgateway: PushgatewayServer,
) -> None:
    exporters = configure("none", pushgateway=pushgateway.url, push_job="flushy")
    assert exporters.flush(timeout=5)
    assert pushgateway.groups() == []
    with track_run("flushy.job", kind="batch"):
        pass
    assert exporters.flush(timeout=5)
    assert [g["labels"] for g in pushgateway.groups() if "state" in g["labels"]] == [
        {"job": "flushy", "state": "success"}
    ]
    exporters.shutdown(timeout=5)  # pushes once more, while the gateway still runs
    assert errors.export_error_counts() == {}


@pytest.mark.parametrize(
    ("url", "grouping_key", "message"),
    [
        ("http://127.0.0.1:9091", {"tenant": "acme"}, "would overwrite"),
        ("http://127.0.0.1:9091", {"state": "x"}, "would overwrite"),
        ("http://127.0.0.1:9091", {"job": "x"}, "would overwrite"),
        ("http://127.0.0.1:9091", {"bad-name": "x"}, "not a valid label name"),
        ("http://127.0.0.1:9091", {"instance": ""}, "non-empty"),
        ("ftp://127.0.0.1:9091", {}, "http"),
    ],
)
def test_bad_push_settings_fail_where_they_are_set(
    url: str, grouping_key: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        push_to_gateway(url, job="x", grouping_key=grouping_key)
    with pytest.raises(ValueError, match=message):
        configure("none", pushgateway=url, push_grouping_key=grouping_key)
