"""Every panel query of the shipped dashboards returns data from real backends.

A short workload tracks runs of cron triggers, per-tenant schedulers, resource and batch jobs
(successes, failures, limited runs, a scheduler that finds nothing, system jobs, one noisy
tenant, overdue jobs, runs still in progress), feeding
- a real Prometheus scraping the library's ``/metrics``, and
- a real VictoriaMetrics over OTLP (``configure("otlp", ...)``).
Then every target of every panel in ``dashboards/*.json`` runs as Grafana would run it (range
or instant), with the template variables set to "All", and must return at least one finite
value. The workload is unhealthy on purpose, so panels that are empty on a healthy system
("which triggers found no tenants", "oldest run in progress") have something to show.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otel_jobtrack import configure, start_metrics_server, track_run
from otel_jobtrack._core import contract
from otel_jobtrack._core.run import Run, reset_for_tests
from otel_jobtrack.exporters import pipeline as config
from otel_jobtrack.generators.dashboards import CRON_UID, SCHEDULE_UID, panels_of
from tests.backends import PrometheusServer, VictoriaMetricsServer, free_port
from tests.dashboard_queries import QueryAPI, expand, finite_values, load

pytestmark = pytest.mark.backend

BOARDS = (CRON_UID, SCHEDULE_UID)

TENANT_RESOURCES = {"acme": 5, "globex": 3, "hooli": 60, "initech": 0}
"""Per-tenant scheduler volumes: hooli is the noisy tenant, initech finds nothing."""

CRON_CADENCE: dict[str, Any] = {"every": 60, "grace": 30, "max_runtime": 300}
SCHEDULE_CADENCE: dict[str, Any] = {"every": 60, "grace": 30, "max_runtime": 300}
OVERDUE_CADENCE: dict[str, Any] = {"every": 1, "grace": 0}
OVERDUE_JOBS = (("dash.inventory.cron.sync", "cron", None), ("dash.crm.digest", "schedule", "acme"))


@dataclass(frozen=True)
class PanelCase:
    uid: str
    panel_id: int
    title: str


def panel_cases() -> list[PanelCase]:
    return [
        PanelCase(uid, panel["id"], panel["title"])
        for uid in BOARDS
        for panel in panels_of(load(uid))
    ]


PANELS = panel_cases()


def case_id(case: PanelCase) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", case.title.lower()).strip("-")
    return f"{case.uid}#{case.panel_id}-{slug[:50]}"


# ---------------------------------------------------------------------------------- workload


def tracked_failure(name: str, kind: str, tenant: str | None, **cadence: Any) -> None:
    with pytest.raises(RuntimeError), track_run(name, kind=kind, tenant=tenant, **cadence):
        raise RuntimeError("simulated failure")


def workload(first: bool) -> int:
    """One round of runs; returns how many runs finished."""
    finished = 0
    # Cron triggers (tenant "system"): successes scheduling every tenant, a failure, a limit.
    for _ in range(2):
        with track_run("dash.billing.cron.schedule", kind="cron", **CRON_CADENCE) as run:
            run.add_resources(len(TENANT_RESOURCES) + 1)
    tracked_failure("dash.billing.cron.schedule", "cron", None, **CRON_CADENCE)
    with track_run("dash.billing.cron.schedule", kind="cron", **CRON_CADENCE) as run:
        run.mark_limited()
    # A trigger that runs on time and finds no tenant at all.
    with track_run("dash.reports.cron.find_stale", kind="cron", every=60):
        pass
    finished += 5
    # Jobs declared every second that succeed once and then stop: overdue at query time.
    if first:
        for name, kind, tenant in OVERDUE_JOBS:
            with track_run(name, kind=kind, tenant=tenant, **OVERDUE_CADENCE) as run:
                run.add_resources(1)
            finished += 1
    # Per-tenant schedulers: a noisy tenant, one finding nothing, a failing one, a limited run.
    for tenant, count in TENANT_RESOURCES.items():
        with track_run(
            "dash.billing.schedule_invoices", kind="schedule", tenant=tenant, **SCHEDULE_CADENCE
        ) as run:
            run.add_resources(count)
    tracked_failure("dash.billing.schedule_invoices", "schedule", "umbrella", **SCHEDULE_CADENCE)
    with track_run(
        "dash.billing.schedule_invoices", kind="schedule", tenant="acme", **SCHEDULE_CADENCE
    ) as run:
        run.mark_limited()
    # A system scheduler next to the tenant ones.
    with track_run("dash.maintenance.cleanup", kind="schedule", every=30) as run:
        run.add_resources(2)
    finished += len(TENANT_RESOURCES) + 3
    # Resource workers per tenant (one failing) and a system batch job.
    for tenant in ("acme", "globex", "hooli"):
        with track_run("dash.billing.sync_invoice", kind="resource", tenant=tenant) as run:
            run.add_resources(1)
    tracked_failure("dash.billing.sync_invoice", "resource", "umbrella")
    with track_run("dash.reports.rollup", kind="batch", every=300) as run:
        run.add_resources(100)
    return finished + 5


@dataclass
class Held:
    """Runs kept in progress while the panels are queried (a stuck trigger and scheduler)."""

    runs: list[Run] = field(default_factory=list)

    def start(self) -> Held:
        self.runs = [
            track_run("dash.billing.cron.schedule", kind="cron", **CRON_CADENCE),
            track_run(
                "dash.billing.schedule_invoices",
                kind="schedule",
                tenant="globex",
                **SCHEDULE_CADENCE,
            ),
        ]
        for run in self.runs:
            run.__enter__()
        return self

    def finish(self) -> None:
        for run in reversed(self.runs):  # innermost first, so current_run() is restored
            run.__exit__(None, None, None)
        self.runs = []


def overdue_query() -> str:
    names = "|".join(name for name, _, _ in OVERDUE_JOBS)
    last = f'{contract.LAST_RUN_TIMESTAMP}{{job_name=~"{names}", state="success"}}'
    return f"min(time() - {last}) > {OVERDUE_CADENCE['every'] + 0.5}"


# ---------------------------------------------------------------------------------- querying


@dataclass
class Outcome:
    """What each panel's targets and each variable returned on one backend."""

    panels: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    """(uid, panel id) -> problems (empty: every target returned data)."""
    variables: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """(uid, panel title, refId) -> query result, for checks of what the panels show."""

    def latest(self, uid: str, title: str, ref: str = "A") -> dict[frozenset[Any], float]:
        """Last finite value of each series of a target, keyed by its labels."""
        out = {}
        for series in self.results[(uid, title, ref)]:
            points = series.get("values") or [series["value"]]
            finite = [float(v) for _, v in points if math.isfinite(float(v))]
            if finite:
                out[frozenset(series["metric"].items())] = finite[-1]
        return out


def query_board(server: QueryAPI, uid: str, start: float, outcome: Outcome) -> None:
    board = load(uid)
    for panel in panels_of(board):
        problems = []
        for target in panel["targets"]:
            expr = expand(target["expr"], board)
            try:
                if target.get("instant"):
                    result = server.query(expr)
                else:
                    result = server.query_range(expr, start=start, step="1s")
            except Exception as exc:  # the backend rejected the query: report it per panel
                problems.append(f"{target['refId']}: {expr}\n  error: {exc}")
                continue
            outcome.results[(uid, panel["title"], target["refId"])] = result
            if not finite_values(result):
                problems.append(f"{target['refId']}: {expr}\n  no data: {result!r:.300}")
        outcome.panels[(uid, panel["id"])] = problems
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", expand(var["query"], board))
        assert match, var["query"]
        values = server.label_values(match.group(2), match.group(1))
        regex = var.get("regex", "").strip("/")
        shown = [v for v in values if re.fullmatch(regex, v)] if regex else values
        outcome.variables[(uid, var["name"])] = [] if shown else [f"no values: {values}"]


def run_and_query(
    server: QueryAPI, deliver: Callable[[], None], wait_until_visible: Callable[[int], None]
) -> Outcome:
    """Two rounds of runs (so counters rise between samples), then every panel query."""
    reset_for_tests()
    start = time.time() - 5
    held = Held()
    try:
        total = workload(first=True)
        held.start()
        deliver()
        wait_until_visible(total)
        total += workload(first=False)
        deliver()
        wait_until_visible(total)
        # Range queries step by 1s: let the final numbers be there for a few steps.
        runs_seen(server, total, offset="3s")
        server.wait_for(overdue_query())
        outcome = Outcome()
        for uid in BOARDS:
            query_board(server, uid, start, outcome)
        return outcome
    finally:
        held.finish()
        reset_for_tests()


def runs_seen(server: QueryAPI, total: int, offset: str = "") -> None:
    """Wait until the backend shows ``total`` finished runs (already ``offset`` ago)."""
    shift = f" offset {offset}" if offset else ""
    server.wait_for(
        f"sum({contract.RUNS_TOTAL}{shift})",
        lambda r: bool(r) and float(r[0]["value"][1]) == total,
    )


@pytest.fixture(scope="module")
def on_prometheus(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    """Prometheus scraping the library's /metrics every second."""
    port = free_port()
    http_server, _ = start_metrics_server(port=port, addr="127.0.0.1")
    prometheus = PrometheusServer(
        scrape_targets=[f"127.0.0.1:{port}"], workdir=tmp_path_factory.mktemp("prometheus")
    )
    try:
        prometheus.start()
        yield run_and_query(prometheus, lambda: None, lambda n: runs_seen(prometheus, n))
    finally:
        prometheus.stop()
        http_server.shutdown()
        http_server.server_close()


@pytest.fixture(scope="module")
def on_victoria_metrics(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    """VictoriaMetrics fed by the library's own OTLP exporter, flushed after each round."""
    vm = VictoriaMetricsServer(workdir=tmp_path_factory.mktemp("victoria-metrics"))
    config.reset_for_tests()
    try:
        vm.start()
        exporters = configure(
            "otlp", endpoint=vm.otlp_url, export_interval=3600, service_name="dashboards"
        )

        def deliver() -> None:
            assert exporters.flush(timeout=10), "OTLP export to VictoriaMetrics failed"

        yield run_and_query(vm, deliver, lambda n: runs_seen(vm, n))
    finally:
        config.reset_for_tests()
        vm.stop()


def check_panel(outcome: Outcome, case: PanelCase, backend: str) -> None:
    problems = outcome.panels[(case.uid, case.panel_id)]
    assert not problems, (
        f"{backend}: panel {case.title!r} (dashboard {case.uid}, id {case.panel_id}) "
        "returned no data:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("case", PANELS, ids=case_id)
def test_panel_has_data_on_prometheus(on_prometheus: Outcome, case: PanelCase) -> None:
    check_panel(on_prometheus, case, "Prometheus (scraped /metrics)")


@pytest.mark.parametrize("case", PANELS, ids=case_id)
def test_panel_has_data_on_victoria_metrics(on_victoria_metrics: Outcome, case: PanelCase) -> None:
    check_panel(on_victoria_metrics, case, "VictoriaMetrics (OTLP)")


def test_variables_have_values(on_prometheus: Outcome, on_victoria_metrics: Outcome) -> None:
    for backend, outcome in (
        ("Prometheus", on_prometheus),
        ("VictoriaMetrics", on_victoria_metrics),
    ):
        failing = {key: p for key, p in outcome.variables.items() if p}
        assert not failing, f"{backend}: variables without values: {failing}"
        assert {uid for uid, _ in outcome.variables} == set(BOARDS)


def labels(key: frozenset[Any], *names: str) -> tuple[str, ...]:
    return tuple(dict(key)[n] for n in names)


@pytest.mark.parametrize("backend", ["on_prometheus", "on_victoria_metrics"])
def test_panels_point_at_the_problems_of_the_workload(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Not just data: the panels single out what the workload did wrong."""
    outcome: Outcome = request.getfixturevalue(backend)
    cron, schedule = CRON_UID, SCHEDULE_UID

    overdue = outcome.latest(cron, "How many triggers missed their declared cadence?")
    assert list(overdue.values()) == [1]  # dash.inventory.cron.sync
    overdue = outcome.latest(schedule, "How many job/tenant pairs missed their cadence?")
    assert list(overdue.values()) == [1]  # dash.crm.digest for acme

    empty = outcome.latest(cron, "Which triggers ran but scheduled no tenants?")
    assert {labels(k, "job_name") for k in empty} == {("dash.reports.cron.find_stale",)}
    empty = outcome.latest(schedule, "Which jobs ran for a tenant but touched zero resources?")
    assert {labels(k, "job_name", "tenant") for k in empty} == {
        ("dash.billing.schedule_invoices", "initech")
    }

    vs_peers = outcome.latest(schedule, "Which tenants enqueue far more than usual?", "C")
    noisy = max(vs_peers, key=lambda k: vs_peers[k])
    assert labels(noisy, "tenant") == ("hooli",)
    assert vs_peers[noisy] > 3

    failing = outcome.latest(schedule, "Which tenants fail, and how often?")
    assert {labels(k, "tenant") for k in failing if failing[k] > 0} == {("umbrella",)}
    tenants_failing = outcome.latest(schedule, "What share of tenants with runs had failures?")
    tenants = {*TENANT_RESOURCES, "umbrella", contract.SYSTEM_TENANT}
    assert list(tenants_failing.values()) == [pytest.approx(1 / len(tenants))]

    system = outcome.latest(schedule, "Do system jobs and tenant jobs both run?", "A")
    assert next(iter(system.values())) > 0

    assert list(outcome.latest(schedule, "How many runs are in progress?").values()) == [1]
    stuck = outcome.latest(cron, "Is a trigger run stuck? (age of the oldest run in progress)")
    assert {labels(k, "job_name") for k in stuck} == {("dash.billing.cron.schedule",)}


def test_held_runs_leave_no_current_run_behind() -> None:
    from otel_jobtrack import current_run

    outside = current_run()
    held = Held().start()
    held.finish()
    assert type(current_run()) is type(outside)
    assert current_run().job_name == outside.job_name
