"""Grafana dashboards for otel-jobtrack, generated with grafana-foundation-sdk from one config.

``otel-jobtrack dashboards`` writes ``dashboards/jobtrack-cron.json`` (the global triggers),
``dashboards/jobtrack-schedule.json`` (the per-tenant side: schedulers, resource and batch jobs)
and ``dashboards/README.md``. The checked-in files are the output for :class:`DashboardsConfig`
defaults; a test fails when they are stale. ``docs/dashboards.md`` explains import and every row.

Every panel answers one of :data:`QUESTIONS` in its title and description, queries the raw
``jobtrack_*`` series (so the same JSON works on Prometheus and on VictoriaMetrics, which does
not evaluate recording rules) with ``$__rate_interval`` in every rate, and goes through the
``datasource`` template variable. :func:`lint` checks those conventions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators import _files as generate
from otel_jobtrack.generators import shipped

CRON_UID: Final = "jobtrack-cron"
SCHEDULE_UID: Final = "jobtrack-schedule"
CRON_FILE: Final = f"{CRON_UID}.json"
SCHEDULE_FILE: Final = f"{SCHEDULE_UID}.json"
README_FILE: Final = "README.md"

DS_INPUT: Final = "DS_PROMETHEUS"
"""Import input Grafana asks for (``__inputs``); its ``${DS_PROMETHEUS}`` is replaced on import."""
DS_VARIABLE: Final = "datasource"
DS_REF_UID: Final = "${" + DS_VARIABLE + "}"
RATE_INTERVAL: Final = "$__rate_interval"
VARIABLES: Final = ("kind", "job_name", "tenant")
"""Label variables on both boards; alert ``dashboard_url`` annotations set them (``var-kind=``)."""
GRAFANA_VERSION: Final = "11.6.0"

# The questions every panel answers (after the background article's list).
Q_CADENCE: Final = "Did it run as often as expected?"
Q_TENANTS: Final = "Did it find any tenants?"
Q_ZERO: Final = "Did it run but touch zero resources?"
Q_VOLUME: Final = "Did one tenant enqueue far more than usual?"
Q_FAILURES: Final = "Are failures isolated or global?"
Q_DURATION: Final = "Is duration growing because of more work, or because it got slower?"
QUESTIONS: Final = (Q_CADENCE, Q_TENANTS, Q_ZERO, Q_VOLUME, Q_FAILURES, Q_DURATION)

# Units (Grafana unit ids; ``suffix:`` is Grafana's custom-unit syntax).
RUNS_PER_MIN: Final = "suffix:runs/min"
RESOURCES_PER_MIN: Final = "suffix:resources/min"
TENANTS_PER_MIN: Final = "suffix:tenants/min"
PER_RUN: Final = "suffix:per run"
RATIO: Final = "percentunit"
SECONDS: Final = "s"
COUNT: Final = "short"
TIMES: Final = "suffix:x"


@dataclass(frozen=True)
class DashboardsConfig:
    """Every setting the dashboards are generated from; the defaults produce the shipped files."""

    selector: str = ""
    """Extra label matchers added to every ``jobtrack_*`` selector, e.g. ``job="billing"``."""
    datasource: str = "${" + DS_INPUT + "}"
    """What the ``datasource`` variable selects at first: ``${DS_PROMETHEUS}`` (asked on import;
    elsewhere Grafana falls back to the default data source), a data source name or uid, or
    ``default``."""
    datasource_regex: str = ""
    """Regex limiting the data sources the ``datasource`` variable offers (e.g. ``/prom|vm/``)."""
    cron_kinds: tuple[str, ...] = ("cron",)
    """Kinds shown on the cron dashboard (its ``kind`` variable offers only these)."""
    schedule_kinds: tuple[str, ...] = ("schedule", "resource", "batch")
    """Kinds shown on the schedule dashboard."""
    title_prefix: str = "otel-jobtrack"
    tags: tuple[str, ...] = ("otel-jobtrack",)
    time_from: str = "now-6h"
    """Default time range start (the range ends at ``now``)."""
    refresh: str = "1m"
    """Auto-refresh interval (empty: off)."""
    overdue_warn: float = 0.8
    """Share of (interval + grace) since the last success at which a job turns orange (1 = red:
    the point at which the missed-run alert considers it missed)."""
    failure_ratio: float = 0.1
    """Share of failed runs shown red (the rules' ``failure_ratio`` default)."""
    limited_ratio: float = 0.25
    """Share of limited runs shown red (the rules' ``limited_ratio`` default)."""
    volume_ratio: float = 3.0
    """A tenant's resource volume this many times its usual (or its peers') is shown red."""
    long_run_seconds: float = 600.0
    """Age of a run still in progress shown red (orange at half); a job's declared max_runtime
    is drawn or compared next to it where it has one."""
    quantiles: tuple[float, ...] = (0.5, 0.95)
    """Duration quantiles drawn (from the run duration histogram)."""
    lookback: str = "2d"
    """How long a last success and a declared cadence outlive the process that exported them
    (a dead scheduler's series go stale; it must still count as overdue)."""

    def __post_init__(self) -> None:
        if any(ch in self.selector for ch in "{}"):
            raise ValueError('selector holds matchers only, without braces: job="billing"')
        for name in ("cron_kinds", "schedule_kinds"):
            kinds = getattr(self, name)
            if not kinds or set(kinds) - set(c.KINDS):
                raise ValueError(f"{name} must be a non-empty subset of {c.KINDS}, got {kinds}")
        if not self.quantiles or not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be between 0 and 1")
        if not re.fullmatch(r"(\d+[smhdwy])+", self.lookback):
            raise ValueError(
                f"lookback must be a Prometheus duration such as 2d, got {self.lookback!r}"
            )
        if not self.datasource:
            raise ValueError("datasource must not be empty (use 'default' for Grafana's default)")


DEFAULT_CONFIG: Final = DashboardsConfig()

# ---------------------------------------------------------------------------------- PromQL


class _Q:
    """PromQL for one configuration: every ``jobtrack_*`` selector goes through :meth:`sel`."""

    def __init__(self, cfg: DashboardsConfig) -> None:
        self.cfg = cfg

    def sel(self, metric: str, *matchers: str, tenant: bool = True) -> str:
        """``metric{selector, kind, job_name[, tenant], matchers}`` filtered by the variables."""
        parts = [self.cfg.selector.strip().rstrip(","), 'kind=~"$kind"', 'job_name=~"$job_name"']
        if tenant:
            parts.append('tenant=~"$tenant"')
        parts.extend(matchers)
        return f"{metric}{{{', '.join(p for p in parts if p)}}}"

    def rate(self, metric: str, *matchers: str) -> str:
        return f"rate({self.sel(metric, *matchers)}[{RATE_INTERVAL}])"

    def runs(self, by: str, *matchers: str) -> str:
        """Runs per second by ``by`` (``""``: one total)."""
        return f"sum{_by(by)} ({self.rate(c.RUNS_TOTAL, *matchers)})"

    def resources(self, by: str) -> str:
        return f"sum{_by(by)} ({self.rate(c.RESOURCES_TOTAL)})"

    def duration_sum(self, by: str) -> str:
        return f"sum{_by(by)} ({self.rate(c.RUN_DURATION + '_sum')})"

    def quantile(self, q: float, by: str) -> str:
        le_by = f"{by}, le" if by else "le"
        bucket = self.rate(c.RUN_DURATION + "_bucket")
        return f"histogram_quantile({_num(q)}, sum by ({le_by}) ({bucket}))"

    def state_ratio(self, state: str, by: str) -> str:
        """Share of runs ending in ``state``; 0 (not empty) when no run ended so."""
        hit = self.runs(by, _state(state))
        return f"({hit} or {self.runs(by)} * 0) / {self.runs(by)}"

    def per_run(self, numerator: str, by: str) -> str:
        return f"{numerator} / ({self.runs(by)} > 0)"

    def job_gauge(self, metric: str) -> str:
        """A per-job declaration (no tenant label), one series per kind and job."""
        return f"max by (kind, job_name) ({self.sel(metric, tenant=False)})"

    def remembered(self, metric: str, *matchers: str, tenant: bool = True) -> str:
        """The newest value within the lookback, so it survives its exporter going away."""
        return f"max_over_time({self.sel(metric, *matchers, tenant=tenant)}[{self.cfg.lookback}])"

    def allowed_gap(self) -> str:
        """Declared interval plus grace per job (the interval alone where no grace is declared)."""
        interval = f"max by (kind, job_name) ({self.remembered(c.EXPECTED_INTERVAL, tenant=False)})"
        grace = f"max by (kind, job_name) ({self.remembered(c.GRACE, tenant=False)})"
        return f"(({interval} + on (kind, job_name) {grace}) or {interval})"

    def since_success(self, by: str) -> str:
        last = self.remembered(c.LAST_RUN_TIMESTAMP, _state(c.SUCCESS))
        return f"(time() - max by ({by}) ({last}))"

    def overdue_share(self, by: str) -> str:
        """Share of the allowed gap used since the last success (>= 1: missed)."""
        group = " group_left ()" if "tenant" in by else ""
        return f"{self.since_success(by)} / on (kind, job_name){group} {self.allowed_gap()}"

    def runs_per_interval(self, by: str) -> str:
        """Runs per declared interval (1 = exactly as declared)."""
        group = " group_left ()" if "tenant" in by else ""
        interval = self.job_gauge(c.EXPECTED_INTERVAL)
        return f"{self.runs(by)} * on (kind, job_name){group} {interval}"

    def zero_resource_runs(self, by: str) -> str:
        """Successful runs of jobs that succeeded and touched no resources in the window
        (a failed run touching nothing is a failure, shown elsewhere; as in the alert)."""
        ok = self.runs(by, _state(c.SUCCESS))
        return f"({ok} > 0) unless on ({by}) ({self.resources(by)} > 0)"

    def oldest_age(self, by: str) -> str:
        return f"time() - min{_by(by)} ({self.sel(c.OLDEST_RUN_START)})"

    def in_progress(self, by: str) -> str:
        return f"sum{_by(by)} ({self.sel(c.RUNS_IN_PROGRESS)})"

    def active_share(self, by: str, state: str) -> str:
        """Share of ``by`` groups with runs that had a run ending in ``state``."""
        hit = f"count({self.runs(by, _state(state))} > 0)"
        return f"({hit} or vector(0)) / count({self.runs(by)} > 0)"

    def label_values(self, label: str, *depends: str) -> str:
        matchers = [self.cfg.selector.strip().rstrip(",")]
        matchers += [f'{d}=~"${d}"' for d in depends]
        body = ", ".join(m for m in matchers if m)
        series = f"{c.RUNS_IN_PROGRESS}{{{body}}}" if body else c.RUNS_IN_PROGRESS
        return f"label_values({series}, {label})"


def _state(state: str) -> str:
    return f'state="{state}"'


def _by(by: str) -> str:
    return f" by ({by})" if by else ""


def _num(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _per_min(expr: str) -> str:
    return f"60 * {expr}"


# ---------------------------------------------------------------------------------- panel specs


@dataclass(frozen=True)
class Target:
    """One query of a panel; in a table, one column (``column``, ``unit``)."""

    expr: str
    legend: str = ""
    instant: bool = False
    column: str = ""
    unit: str = ""
    thresholds: tuple[tuple[float | None, str], ...] = ()
    """Table column colouring (panels other than tables use the panel's thresholds)."""


@dataclass(frozen=True)
class PanelSpec:
    """What a panel shows and which question it answers; turned into SDK builders later."""

    viz: str
    """``stat``, ``timeseries``, ``bargauge`` or ``table``."""
    title: str
    question: str
    text: str
    unit: str
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ()
    no_value: str = ""
    stacked: bool = False
    max: float | None = None

    @property
    def description(self) -> str:
        return f"{self.question} {self.text}"


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True)
class BoardSpec:
    uid: str
    title: str
    summary: str
    kinds: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    link_uid: str
    link_title: str


def _green_red(red: float, orange: float | None = None) -> tuple[tuple[float | None, str], ...]:
    steps: list[tuple[float | None, str]] = [(None, "green")]
    if orange is not None:
        steps.append((orange, "orange"))
    steps.append((red, "red"))
    return tuple(steps)


_Steps = tuple[tuple[float | None, str], ...]


def _share_columns(q: _Q, by: str, fail: _Steps, limited: _Steps) -> tuple[Target, Target]:
    """Table columns: the failed and the limited share of runs per ``by``."""
    return (
        Target(q.state_ratio(c.FAILURE, by), column="failed", unit=RATIO, thresholds=fail),
        Target(q.state_ratio(c.LIMITED, by), column="limited", unit=RATIO, thresholds=limited),
    )


def _cron_board(cfg: DashboardsConfig) -> BoardSpec:
    q = _Q(cfg)
    kj = "kind, job_name"
    overdue = _green_red(1.0, cfg.overdue_warn)
    fail = _green_red(cfg.failure_ratio, cfg.failure_ratio / 2)
    limited = _green_red(cfg.limited_ratio, cfg.limited_ratio / 2)
    long_run = _green_red(cfg.long_run_seconds, cfg.long_run_seconds / 2)
    quantiles = tuple(
        Target(q.quantile(x, kj), f"{{{{job_name}}}} p{_num(x * 100)}") for x in cfg.quantiles
    )
    cadence = RowSpec(
        "Did the triggers run as often as expected?",
        (
            PanelSpec(
                "stat",
                "How many triggers missed their declared cadence?",
                Q_CADENCE,
                "Triggers whose last success is older than the interval plus grace they declare "
                "in code (every=/cron=, grace=): what the missed-run alert checks. 0 when all "
                "are on time. Last successes are remembered for the configured lookback, so a "
                "trigger whose process died still counts; jobs that declare no cadence or never "
                "succeeded are not counted.",
                COUNT,
                (Target(f"count({q.overdue_share(kj)} >= 1)", "overdue", instant=True),),
                width=6,
                thresholds=_green_red(1),
                no_value="0",
            ),
            PanelSpec(
                "bargauge",
                "How much of its allowed gap has each trigger used since its last success?",
                Q_CADENCE,
                "Time since the last successful run divided by the declared interval plus "
                "grace. Below 100% the trigger is on time; at 100% it has missed a run.",
                RATIO,
                (Target(q.overdue_share(kj), "{{job_name}}", instant=True),),
                width=18,
                thresholds=overdue,
                max=1.0,
            ),
            PanelSpec(
                "timeseries",
                "Did each trigger run once per declared interval?",
                Q_CADENCE,
                "Runs per declared interval (run rate x jobtrack_job_expected_interval_seconds): "
                "1 means it ran exactly as often as declared, below 1 it ran less often "
                "(skipped ticks, a dead scheduler), above 1 more often (duplicate schedulers).",
                COUNT,
                (Target(q.runs_per_interval(kj), "{{job_name}}"),),
                thresholds=((None, "red"), (1.0, "green")),
            ),
            PanelSpec(
                "timeseries",
                "How often did each trigger run, and how did its runs end?",
                Q_CADENCE,
                "Runs per minute per trigger and final state (success, failure, limited = "
                "refused by a concurrency limit). A gap means the trigger did not run at all.",
                RUNS_PER_MIN,
                (Target(_per_min(q.runs("kind, job_name, state")), "{{job_name}} {{state}}"),),
                stacked=True,
            ),
        ),
    )
    tenants = RowSpec(
        "Did the triggers find any tenants?",
        (
            PanelSpec(
                "timeseries",
                "How many tenants did each trigger run schedule?",
                Q_TENANTS,
                "Resources (tenants scheduled) per run, per trigger: "
                "rate(jobtrack_resources_total) / rate(jobtrack_runs_total). A drop to zero "
                "means the trigger runs but finds no tenant to schedule.",
                PER_RUN,
                (Target(q.per_run(q.resources(kj), kj), "{{job_name}}"),),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "How many tenants did each trigger schedule per minute?",
                Q_TENANTS,
                "Tenants (resources) scheduled per minute per trigger: the total amount of work "
                "the global triggers hand to the per-tenant schedulers.",
                TENANTS_PER_MIN,
                (Target(_per_min(q.resources(kj)), "{{job_name}}"),),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Which triggers ran but scheduled no tenants?",
                Q_ZERO,
                "Successful runs per minute of triggers that succeeded in the window and touched "
                "zero resources (what the zero-resource alert checks). Empty when every "
                "trigger that ran scheduled at least one tenant.",
                RUNS_PER_MIN,
                (Target(_per_min(q.zero_resource_runs(kj)), "{{job_name}}"),),
                width=8,
            ),
        ),
    )
    duration = RowSpec(
        "How long do trigger runs take?",
        (
            PanelSpec(
                "timeseries",
                "Is each trigger's duration growing?",
                Q_DURATION,
                "Duration quantiles per trigger from jobtrack_run_duration_seconds. Compare "
                "with the seconds per tenant next to it to tell more work from slower work.",
                SECONDS,
                quantiles,
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Is a trigger slower, or scheduling more tenants? (seconds per tenant)",
                Q_DURATION,
                "Run time spent per tenant scheduled. Flat while duration grows: more tenants "
                "(more work). Growing: each tenant takes longer (slower work).",
                SECONDS,
                (Target(f"{q.duration_sum(kj)} / ({q.resources(kj)} > 0)", "{{job_name}}"),),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Is a trigger run stuck? (age of the oldest run in progress)",
                Q_CADENCE,
                "Age of the oldest run still in progress per trigger, next to its declared "
                "max_runtime (dashed). A stuck run blocks the next ones behind its lock. "
                "Empty when nothing is running.",
                SECONDS,
                (
                    Target(q.oldest_age(kj), "{{job_name}} oldest run"),
                    Target(q.job_gauge(c.MAX_RUNTIME), "{{job_name}} max_runtime"),
                ),
                width=8,
                thresholds=long_run,
            ),
        ),
    )
    failures = RowSpec(
        "Are trigger failures isolated or global?",
        (
            PanelSpec(
                "stat",
                "What share of trigger runs failed?",
                Q_FAILURES,
                "Failed runs / all runs of the selected triggers, over the rate interval.",
                RATIO,
                (Target(q.state_ratio(c.FAILURE, ""), "failed", instant=True),),
                width=6,
                thresholds=fail,
            ),
            PanelSpec(
                "stat",
                "What share of trigger runs hit a concurrency limit?",
                Q_FAILURES,
                "Limited runs (refused because another run held the lock) / all runs.",
                RATIO,
                (Target(q.state_ratio(c.LIMITED, ""), "limited", instant=True),),
                width=6,
                thresholds=limited,
            ),
            PanelSpec(
                "stat",
                "What share of running triggers are failing?",
                Q_FAILURES,
                "Triggers with at least one failed run / triggers with runs. Near 0%: one "
                "trigger is failing (isolated); near 100%: they all fail (global: a shared "
                "database, broker or deploy).",
                RATIO,
                (Target(q.active_share(kj, c.FAILURE), "failing triggers", instant=True),),
                width=12,
                thresholds=_green_red(0.5, 0.01),
            ),
            PanelSpec(
                "timeseries",
                "Which triggers fail or are limited, and how often?",
                Q_FAILURES,
                "Share of each trigger's runs that failed or were limited. One line up: an "
                "isolated problem; all lines up together: a global one.",
                RATIO,
                (
                    Target(q.state_ratio(c.FAILURE, kj), "{{job_name}} failure"),
                    Target(q.state_ratio(c.LIMITED, kj), "{{job_name}} limited"),
                ),
                width=24,
                thresholds=fail,
            ),
        ),
    )
    breakdown = RowSpec(
        "Per-trigger breakdown",
        (
            PanelSpec(
                "table",
                "How is each trigger doing right now?",
                Q_CADENCE,
                "One row per trigger over the latest rate interval: runs per minute, runs per "
                "declared interval, tenants per run, failure and limited shares, p95 duration "
                "and time since the last success.",
                COUNT,
                (
                    Target(_per_min(q.runs(kj)), column="runs/min", unit=RUNS_PER_MIN),
                    Target(q.runs_per_interval(kj), column="runs per interval", unit=COUNT),
                    Target(q.per_run(q.resources(kj), kj), column="tenants/run", unit=PER_RUN),
                    *_share_columns(q, kj, fail, limited),
                    Target(q.quantile(0.95, kj), column="p95 duration", unit=SECONDS),
                    Target(q.since_success(kj), column="since success", unit=SECONDS),
                ),
                width=24,
                height=9,
            ),
        ),
    )
    return BoardSpec(
        uid=CRON_UID,
        title=f"{cfg.title_prefix} / Cron triggers",
        summary=(
            "Global cron triggers: are they running, how often against the cadence declared "
            "in code, how long they take, how many tenants each run scheduled, and how runs "
            "end (success, failure, limited), per trigger."
        ),
        kinds=cfg.cron_kinds,
        rows=(cadence, tenants, duration, failures, breakdown),
        link_uid=SCHEDULE_UID,
        link_title="Schedule jobs (per tenant)",
    )


def _schedule_board(cfg: DashboardsConfig) -> BoardSpec:
    q = _Q(cfg)
    kj = "kind, job_name"
    kjt = "kind, job_name, tenant"
    kt = "kind, tenant"
    overdue = _green_red(1.0, cfg.overdue_warn)
    fail = _green_red(cfg.failure_ratio, cfg.failure_ratio / 2)
    limited = _green_red(cfg.limited_ratio, cfg.limited_ratio / 2)
    long_run = _green_red(cfg.long_run_seconds, cfg.long_run_seconds / 2)
    volume = _green_red(cfg.volume_ratio, (1 + cfg.volume_ratio) / 2)
    system = f'tenant="{c.SYSTEM_TENANT}"'
    tenant_jobs = f'tenant!="{c.SYSTEM_TENANT}"'
    overview = RowSpec(
        "Overview",
        (
            PanelSpec(
                "stat",
                "How many runs per minute?",
                Q_CADENCE,
                "Runs per minute of the selected jobs and tenants, all states.",
                RUNS_PER_MIN,
                (Target(_per_min(q.runs("")), "runs/min", instant=True),),
                width=4,
            ),
            PanelSpec(
                "stat",
                "How many job/tenant pairs missed their cadence?",
                Q_CADENCE,
                "Job and tenant pairs whose last success is older than the declared interval "
                "plus grace (what the missed-run alert checks), remembered for the configured "
                "lookback even after the process died. Jobs without a declared cadence are "
                "not counted.",
                COUNT,
                (Target(f"count({q.overdue_share(kjt)} >= 1)", "overdue", instant=True),),
                width=4,
                thresholds=_green_red(1),
                no_value="0",
            ),
            PanelSpec(
                "stat",
                "What share of runs failed?",
                Q_FAILURES,
                "Failed runs / all runs over the rate interval.",
                RATIO,
                (Target(q.state_ratio(c.FAILURE, ""), "failed", instant=True),),
                width=4,
                thresholds=fail,
            ),
            PanelSpec(
                "stat",
                "What share of runs hit a concurrency limit?",
                Q_FAILURES,
                "Limited runs (the tenant's lock was held by another run) / all runs.",
                RATIO,
                (Target(q.state_ratio(c.LIMITED, ""), "limited", instant=True),),
                width=4,
                thresholds=limited,
            ),
            PanelSpec(
                "stat",
                "How many runs are in progress?",
                Q_CADENCE,
                "Runs started and not finished yet (jobtrack_runs_in_progress).",
                COUNT,
                (Target(q.in_progress(""), "in progress", instant=True),),
                width=4,
            ),
            PanelSpec(
                "stat",
                "How long has the oldest running run been going?",
                Q_CADENCE,
                "Age of the oldest run still in progress. A run that never ends blocks its "
                "tenant's lock, so later runs end limited or never start.",
                SECONDS,
                (Target(q.oldest_age(""), "oldest run", instant=True),),
                width=4,
                thresholds=long_run,
                no_value="nothing running",
            ),
        ),
    )
    cadence = RowSpec(
        "Did each job run as often as expected, for every tenant?",
        (
            PanelSpec(
                "timeseries",
                "How often did each job run, and how did its runs end?",
                Q_CADENCE,
                "Runs per minute per job and final state, all selected tenants together.",
                RUNS_PER_MIN,
                (Target(_per_min(q.runs("kind, job_name, state")), "{{job_name}} {{state}}"),),
                stacked=True,
            ),
            PanelSpec(
                "timeseries",
                "Did each job run once per declared interval, for each tenant?",
                Q_CADENCE,
                "Runs per declared interval per job and tenant: 1 means exactly as declared, "
                "below 1 the tenant's scheduler ran less often than declared.",
                COUNT,
                (Target(q.runs_per_interval(kjt), "{{job_name}} / {{tenant}}"),),
                thresholds=((None, "red"), (1.0, "green")),
            ),
            PanelSpec(
                "table",
                "How long since each job last succeeded, for each tenant?",
                Q_CADENCE,
                "Time since the last success per job and tenant, and the share of the declared "
                "interval plus grace it has used (100%: missed; empty where no cadence is "
                "declared).",
                SECONDS,
                (
                    Target(q.since_success(kjt), column="since success", unit=SECONDS),
                    Target(
                        q.overdue_share(kjt),
                        column="of allowed gap",
                        unit=RATIO,
                        thresholds=overdue,
                    ),
                ),
                width=24,
                thresholds=overdue,
            ),
        ),
    )
    resources = RowSpec(
        "Did the schedulers find work?",
        (
            PanelSpec(
                "timeseries",
                "How many resources did each job touch per minute?",
                Q_ZERO,
                "Resources (records, batches, work items) touched per minute per job. A job "
                "whose line sits at zero runs but finds nothing to do.",
                RESOURCES_PER_MIN,
                (Target(_per_min(q.resources(kj)), "{{job_name}}"),),
            ),
            PanelSpec(
                "timeseries",
                "Which jobs ran for a tenant but touched zero resources?",
                Q_ZERO,
                "Successful runs per minute of job and tenant pairs that succeeded in the window "
                "and touched no resource at all. Empty when every run found work.",
                RUNS_PER_MIN,
                (Target(_per_min(q.zero_resource_runs(kjt)), "{{job_name}} / {{tenant}}"),),
            ),
        ),
    )
    per_tenant = RowSpec(
        "Per tenant: system jobs next to tenant jobs",
        (
            PanelSpec(
                "timeseries",
                "Do system jobs and tenant jobs both run?",
                Q_CADENCE,
                f'Runs per minute of jobs without a tenant (tenant "{c.SYSTEM_TENANT}") next '
                "to runs of tenant jobs.",
                RUNS_PER_MIN,
                (
                    Target(_per_min(q.runs("", system)), "system jobs"),
                    Target(_per_min(q.runs("", tenant_jobs)), "tenant jobs"),
                ),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Do system jobs or tenant jobs touch the resources?",
                Q_VOLUME,
                "Resources per minute touched by system jobs and by tenant jobs.",
                RESOURCES_PER_MIN,
                (
                    Target(_per_min(f"sum ({q.rate(c.RESOURCES_TOTAL, system)})"), "system jobs"),
                    Target(
                        _per_min(f"sum ({q.rate(c.RESOURCES_TOTAL, tenant_jobs)})"),
                        "tenant jobs",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "How many resources does each tenant enqueue per minute?",
                Q_VOLUME,
                "Resources per minute per tenant, all selected jobs. One line far above its "
                "own past is a tenant enqueueing more than usual.",
                RESOURCES_PER_MIN,
                (Target(_per_min(q.resources(kt)), "{{tenant}} ({{kind}})"),),
                width=8,
            ),
            PanelSpec(
                "table",
                "Which tenants enqueue far more than usual?",
                Q_VOLUME,
                "Per job and tenant: resources per minute now, that rate against the tenant's "
                "own average over the dashboard range, and against the median tenant of the "
                "same job. Red from the configured ratio up.",
                RESOURCES_PER_MIN,
                (
                    Target(
                        _per_min(q.resources(kjt)), column="resources/min", unit=RESOURCES_PER_MIN
                    ),
                    Target(
                        f"{q.resources(kjt)} / (avg_over_time(({q.resources(kjt)})"
                        "[$__range:$__interval]) > 0)",
                        column="x own average",
                        unit=TIMES,
                        thresholds=volume,
                    ),
                    Target(
                        f"{q.resources(kjt)} / on (kind, job_name) group_left () "
                        f"(quantile by (kind, job_name) (0.5, {q.resources(kjt)}) > 0)",
                        column="x median tenant",
                        unit=TIMES,
                        thresholds=volume,
                    ),
                ),
                width=24,
                height=9,
                thresholds=volume,
            ),
        ),
    )
    failures = RowSpec(
        "Are failures isolated or global?",
        (
            PanelSpec(
                "stat",
                "What share of tenants with runs had failures?",
                Q_FAILURES,
                "Tenants with at least one failed run / tenants with runs. Low: isolated to a "
                "few tenants (their data, their credentials). Near 100%: global (the code, a "
                "shared dependency).",
                RATIO,
                (Target(q.active_share("tenant", c.FAILURE), "tenants failing", instant=True),),
                width=6,
                thresholds=_green_red(0.5, 0.01),
            ),
            PanelSpec(
                "stat",
                "What share of jobs with runs had failures?",
                Q_FAILURES,
                "Jobs with at least one failed run / jobs with runs. One scheduler failing "
                "for every tenant points at that scheduler; every job failing points at the "
                "platform.",
                RATIO,
                (Target(q.active_share(kj, c.FAILURE), "jobs failing", instant=True),),
                width=6,
                thresholds=_green_red(0.5, 0.01),
            ),
            PanelSpec(
                "timeseries",
                "Which jobs fail or are limited, and how often?",
                Q_FAILURES,
                "Share of each job's runs that failed or were limited.",
                RATIO,
                (
                    Target(q.state_ratio(c.FAILURE, kj), "{{job_name}} failure"),
                    Target(q.state_ratio(c.LIMITED, kj), "{{job_name}} limited"),
                ),
                width=12,
                thresholds=fail,
            ),
            PanelSpec(
                "timeseries",
                "Which tenants fail, and how often?",
                Q_FAILURES,
                "Failed runs per minute per tenant and job. One tenant alone: isolated; the "
                "same job for every tenant: that job is broken.",
                RUNS_PER_MIN,
                (Target(_per_min(q.runs(kjt, _state(c.FAILURE))), "{{tenant}} {{job_name}}"),),
            ),
            PanelSpec(
                "timeseries",
                "Which tenants are held back by concurrency limits?",
                Q_FAILURES,
                "Limited runs per minute per tenant and job: the tenant's lock was still held, "
                "usually by a slow or stuck earlier run.",
                RUNS_PER_MIN,
                (Target(_per_min(q.runs(kjt, _state(c.LIMITED))), "{{tenant}} {{job_name}}"),),
            ),
        ),
    )
    duration = RowSpec(
        "Is duration growing because of more work, or because it got slower?",
        (
            PanelSpec(
                "timeseries",
                "How long do each job's runs take?",
                Q_DURATION,
                "Duration quantiles per job from jobtrack_run_duration_seconds.",
                SECONDS,
                tuple(
                    Target(q.quantile(x, kj), f"{{{{job_name}}}} p{_num(x * 100)}")
                    for x in cfg.quantiles
                ),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Is each run doing more work? (resources per run)",
                Q_DURATION,
                "Resources touched per run per job. Rising together with duration: the job "
                "got more work.",
                PER_RUN,
                (Target(q.per_run(q.resources(kj), kj), "{{job_name}}"),),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Is each resource taking longer? (seconds per resource)",
                Q_DURATION,
                "Run time per resource touched, per job. Rising while resources per run stay "
                "flat: the work itself got slower.",
                SECONDS,
                (Target(f"{q.duration_sum(kj)} / ({q.resources(kj)} > 0)", "{{job_name}}"),),
                width=8,
            ),
            PanelSpec(
                "timeseries",
                "Which tenants' runs take longest?",
                Q_DURATION,
                "p95 duration per tenant (all selected jobs): one slow tenant is usually one "
                "big tenant; check its resources per minute above.",
                SECONDS,
                (Target(q.quantile(0.95, kt), "{{tenant}} ({{kind}})"),),
                width=24,
            ),
        ),
    )
    in_progress = RowSpec(
        "Runs in progress",
        (
            PanelSpec(
                "timeseries",
                "How many runs are in progress, per job?",
                Q_CADENCE,
                "Runs started and not yet finished per job. A count that only grows means runs "
                "hang; a job stuck at 1 keeps its tenant locked.",
                COUNT,
                (Target(q.in_progress(kj), "{{job_name}}"),),
            ),
            PanelSpec(
                "table",
                "Which runs have been going the longest?",
                Q_CADENCE,
                "Per job and tenant: age of the oldest run in progress, and that age as a share "
                "of the declared max_runtime (100%: the stuck-run alert's limit). Empty when "
                "nothing is running.",
                SECONDS,
                (
                    Target(
                        q.oldest_age(kjt),
                        column="oldest run age",
                        unit=SECONDS,
                        thresholds=long_run,
                    ),
                    Target(
                        f"({q.oldest_age(kjt)}) / on (kind, job_name) group_left () "
                        f"{q.job_gauge(c.MAX_RUNTIME)}",
                        column="of max_runtime",
                        unit=RATIO,
                        thresholds=overdue,
                    ),
                ),
                thresholds=long_run,
            ),
        ),
    )
    breakdown = RowSpec(
        "Per-job and per-tenant breakdown",
        (
            PanelSpec(
                "table",
                "How is each job doing right now?",
                Q_CADENCE,
                "One row per job over the latest rate interval: runs per minute, failure and "
                "limited shares, resources per minute and per run, p95 duration.",
                COUNT,
                (
                    Target(_per_min(q.runs(kj)), column="runs/min", unit=RUNS_PER_MIN),
                    *_share_columns(q, kj, fail, limited),
                    Target(
                        _per_min(q.resources(kj)), column="resources/min", unit=RESOURCES_PER_MIN
                    ),
                    Target(q.per_run(q.resources(kj), kj), column="resources/run", unit=PER_RUN),
                    Target(q.quantile(0.95, kj), column="p95 duration", unit=SECONDS),
                ),
                width=24,
                height=9,
            ),
            PanelSpec(
                "table",
                "How is each tenant doing right now?",
                Q_FAILURES,
                "One row per tenant and kind: runs per minute, failure and limited shares, "
                "resources per minute and time since its last success (any job).",
                COUNT,
                (
                    Target(_per_min(q.runs(kt)), column="runs/min", unit=RUNS_PER_MIN),
                    Target(
                        q.state_ratio(c.FAILURE, kt), column="failed", unit=RATIO, thresholds=fail
                    ),
                    Target(
                        q.state_ratio(c.LIMITED, kt),
                        column="limited",
                        unit=RATIO,
                        thresholds=limited,
                    ),
                    Target(
                        _per_min(q.resources(kt)), column="resources/min", unit=RESOURCES_PER_MIN
                    ),
                    Target(q.since_success(kt), column="since success", unit=SECONDS),
                ),
                width=24,
                height=9,
            ),
        ),
    )
    return BoardSpec(
        uid=SCHEDULE_UID,
        title=f"{cfg.title_prefix} / Schedule jobs",
        summary=(
            "The per-tenant side: schedulers, resource and batch jobs per job and per tenant, "
            f'system jobs (tenant "{c.SYSTEM_TENANT}") next to tenant jobs, resources touched, '
            "runs that touched nothing, failure and limited shares, duration against work, "
            "unusual tenant volume, time since the last success and runs in progress."
        ),
        kinds=cfg.schedule_kinds,
        rows=(overview, cadence, resources, per_tenant, failures, duration, in_progress, breakdown),
        link_uid=CRON_UID,
        link_title="Cron triggers",
    )


def boards(cfg: DashboardsConfig = DEFAULT_CONFIG) -> tuple[BoardSpec, ...]:
    """Both dashboards as specs (what the panels show), before Grafana JSON."""
    return (_cron_board(cfg), _schedule_board(cfg))


# ---------------------------------------------------------------------------------- Grafana JSON


def _sdk() -> Any:
    try:
        from grafana_foundation_sdk.builders import dashboard
    except ImportError:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "otel-jobtrack dashboards needs grafana-foundation-sdk: "
            "pip install 'otel-jobtrack[dashboards]'"
        ) from None
    return dashboard


def _datasource_ref() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid=DS_REF_UID)


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=color) for v, color in steps])
    )


def _query(target: Target, ref_id: str, table: bool) -> Any:
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

    query = (
        prometheus.Dataquery()
        .expr(target.expr)
        .ref_id(ref_id)
        .datasource(_datasource_ref())
        .editor_mode(QueryEditorMode.CODE)
    )
    if table:
        query = query.instant().format(PromQueryFormat.TABLE)
    elif target.instant:
        query = query.instant()
    else:
        query = query.range()
    if target.legend:
        query = query.legend_format(target.legend)
    return query


def _ref_ids() -> Iterator[str]:
    yield from "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _panel(spec: PanelSpec, panel_id: int) -> Any:
    from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
    from grafana_foundation_sdk.builders.common import (
        ReduceDataOptions,
        StackingConfig,
        VizLegendOptions,
        VizTooltipOptions,
    )
    from grafana_foundation_sdk.models.common import (
        BarGaugeDisplayMode,
        BigValueColorMode,
        BigValueGraphMode,
        GraphThresholdsStyleMode,
        LegendDisplayMode,
        LegendPlacement,
        SortOrder,
        StackingMode,
        TooltipDisplayMode,
        VizOrientation,
    )
    from grafana_foundation_sdk.models.dashboard import DataTransformerConfig, DynamicConfigValue

    last = ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    builder: Any
    if spec.viz == "stat":
        builder = (
            stat.Panel()
            .reduce_options(last)
            .graph_mode(BigValueGraphMode.NONE)
            .color_mode(BigValueColorMode.VALUE)
        )
    elif spec.viz == "bargauge":
        builder = (
            bargauge.Panel()
            .reduce_options(last)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .orientation(VizOrientation.HORIZONTAL)
            .min(0)
        )
    elif spec.viz == "table":
        builder = table.Panel()
    elif spec.viz == "timeseries":
        from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig

        builder = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(
                VizLegendOptions()
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
        )
        if spec.stacked:
            builder = builder.stacking(StackingConfig().mode(StackingMode.NORMAL))
        if spec.thresholds:
            builder = builder.thresholds_style(
                GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
            )
    else:
        raise ValueError(f"unknown visualisation {spec.viz!r}")
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_datasource_ref())
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    if spec.thresholds and spec.viz != "table":
        builder = builder.thresholds(_thresholds(spec.thresholds))
    if spec.no_value:
        builder = builder.no_value(spec.no_value)
    if spec.max is not None:
        builder = builder.max(spec.max)
    is_table = spec.viz == "table"
    refs = _ref_ids()
    renames: dict[str, str] = {}
    for target in spec.targets:
        ref = next(refs)
        builder = builder.with_target(_query(target, ref, is_table))
        if is_table:
            column = target.column or ref
            renames[f"Value #{ref}"] = column
            props = [DynamicConfigValue(id_val="unit", value=target.unit or spec.unit)]
            if target.thresholds:
                props += [
                    DynamicConfigValue(
                        id_val="thresholds", value=_thresholds(target.thresholds).build()
                    ),
                    DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                ]
            builder = builder.override_by_name(column, props)
    if is_table:
        builder = builder.with_transformation(
            DataTransformerConfig(id_val="merge", options={})
        ).with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": renames},
            )
        )
    return builder


def _variables(board: BoardSpec, cfg: DashboardsConfig) -> list[Any]:
    from grafana_foundation_sdk.models.dashboard import (
        VariableOption,
        VariableRefresh,
        VariableSort,
    )

    dashboard = _sdk()
    q = _Q(cfg)
    ds = (
        dashboard.DatasourceVariable(DS_VARIABLE)
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text=cfg.datasource, value=cfg.datasource))
    )
    if cfg.datasource_regex:
        ds = ds.regex(cfg.datasource_regex)
    kinds = "|".join(board.kinds)
    out = [ds]
    descriptions = {
        "kind": f"Kinds on this dashboard ({', '.join(board.kinds)}).",
        "job_name": "Job names of the selected kinds.",
        "tenant": f'Tenants of the selected jobs ("{c.SYSTEM_TENANT}": jobs without a tenant).',
    }
    for i, name in enumerate(VARIABLES):
        var = (
            dashboard.QueryVariable(name)
            .label(name)
            .description(descriptions[name])
            .datasource(_datasource_ref())
            .query(q.label_values(name, *VARIABLES[:i]))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(kinds if name == "kind" else ".*")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        if name == "kind":
            var = var.regex(f"/^({kinds})$/")
        out.append(var)
    return out


def _generated_note(cfg: DashboardsConfig) -> str:
    changed = _changed_settings(cfg)
    how = "otel-jobtrack dashboards --output-dir dashboards"
    settings = (
        f" with settings {json.dumps(changed, sort_keys=True)}" if changed else " with defaults"
    )
    return (
        f"Generated by `otel-jobtrack dashboards` (otel_jobtrack/dashboards.py){settings}. "
        f"Do not edit the JSON: change the code or settings and regenerate with `{how}`."
    )


def build(board: BoardSpec, cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """The importable Grafana JSON of one board (with ``__inputs`` for the import dialog)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import (
        DashboardCursorSync,
        DashboardLinkType,
        DataSourceRef,
    )

    dashboard = _sdk()
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(f"{board.summary} {_generated_note(cfg)}")
        .tags(list(cfg.tags))
        .time(cfg.time_from, "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            dashboard.DashboardLink(board.link_title)
            .type(DashboardLinkType.LINK)
            .url(f"/d/{board.link_uid}")
            .icon("dashboard")
            .tooltip("Keeps the time range and the variables")
            .include_vars(True)
            .keep_time(True)
        )
    )
    if cfg.refresh:
        builder = builder.refresh(cfg.refresh)
    for var in _variables(board, cfg):
        builder = builder.with_variable(var)
    panel_id = 0
    for row in board.rows:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id))
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    head: dict[str, Any] = {}
    if DS_INPUT in cfg.datasource:
        head["__inputs"] = [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "Prometheus-compatible data source holding the jobtrack_* series",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
    head["__requires"] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [
        {"type": "panel", "id": viz, "name": viz, "version": ""}
        for viz in sorted({p.viz for r in board.rows for p in r.panels})
    ]
    head["__generated_by"] = _generated_note(cfg)
    return {**head, **data}


def render(cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, str]:
    """Every generated file: path relative to the output directory -> content."""
    files = {}
    for board in boards(cfg):
        files[f"{board.uid}.json"] = json.dumps(build(board, cfg), indent=2) + "\n"
    files[README_FILE] = _readme(cfg)
    return files


def stale_files(out_dir: Path, cfg: DashboardsConfig = DEFAULT_CONFIG) -> list[str]:
    """Generated files missing from ``out_dir`` or different from what ``cfg`` generates."""
    return generate.stale_files(render(cfg), out_dir)


def write(out_dir: Path, cfg: DashboardsConfig = DEFAULT_CONFIG) -> list[Path]:
    """Write every generated file under ``out_dir``; other files there are left alone."""
    return generate.write_files(render(cfg), out_dir)


def _readme(cfg: DashboardsConfig) -> str:
    lines = [
        "<!--",
        _generated_note(cfg),
        "-->",
        "# Grafana dashboards for otel-jobtrack",
        "",
        "Import both into Grafana 10 or 11 (UI, provisioning or HTTP API: see",
        f"[docs/dashboards.md]({shipped.doc_url('docs/dashboards.md')}), which also describes "
        "every row).",
        "",
    ]
    for board in boards(cfg):
        panels = sum(len(r.panels) for r in board.rows)
        lines.append(f"- `{board.uid}.json` (uid `{board.uid}`, {panels} panels): {board.summary}")
    lines += [
        "",
        "Both use a `datasource` variable (asked for as `DS_PROMETHEUS` on import) and the",
        "`kind`, `job_name` and `tenant` variables that alert links set. They query the raw",
        "`jobtrack_*` series, so they work on Prometheus and on VictoriaMetrics alike.",
        "",
        "These files are generated; a test fails when they are stale. To regenerate, with your",
        "own settings if you like:",
        "",
        "```sh",
        "otel-jobtrack dashboards --print-config > dashboards-settings.json   # every setting",
        "otel-jobtrack dashboards --config dashboards-settings.json --output-dir dashboards",
        "otel-jobtrack dashboards --selector 'job=\"billing-worker\"' --datasource Mimir",
        "otel-jobtrack dashboards --check      # exit 1 if the files here are stale",
        "```",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- lint

_RANGE_FUNCS: Final = re.compile(r"\b(rate|irate|increase)\s*\(")
_UNITLESS: Final = ("", "none")


def _range_of_first_argument(expr: str, open_paren: int) -> str | None:
    """The ``[...]`` range closing the first argument of the call opened at ``open_paren``."""
    depth = 0
    i = open_paren
    while i < len(expr):
        ch = expr[i]
        if ch == '"':
            i = expr.index('"', i + 1)
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth == 0:
                return None
        elif ch == "[" and depth == 1:
            return expr[i + 1 : expr.index("]", i)]
        i += 1
    return None


def rate_windows(expr: str) -> list[tuple[str, str | None]]:
    """``(function, range)`` of every rate/irate/increase call in ``expr``."""
    return [
        (m.group(1), _range_of_first_argument(expr, m.end() - 1))
        for m in _RANGE_FUNCS.finditer(expr)
    ]


def _is_variable_ref(uid: object) -> bool:
    return isinstance(uid, str) and uid.startswith("$")


def _walk_datasources(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _walk_datasources(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk_datasources(value, f"{path}[{i}]")


def panels_of(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def lint(dashboard: Mapping[str, Any]) -> list[str]:
    """Problems with Grafana conventions, in the spirit of Grafana's dashboard-linter.

    Checks: a Prometheus ``datasource`` variable; every panel and target on it; no hard-coded
    data source uid anywhere; query variables on it too, multi-select with "All"; units and
    descriptions on every panel, the description opening with one of :data:`QUESTIONS`;
    ``$__rate_interval`` as the range of every rate/irate/increase; unique panel ids and
    target refIds.
    """
    problems: list[str] = []
    variables = dashboard.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("type") == "datasource"]
    if not any(v.get("query") == "prometheus" for v in ds_vars):
        problems.append("no Prometheus datasource template variable")
    ds_names = {v.get("name") for v in ds_vars}
    allowed_refs = {f"${n}" for n in ds_names} | {f"${{{n}}}" for n in ds_names}

    def uses_variable(ref: object) -> bool:
        uid = ref.get("uid") if isinstance(ref, Mapping) else ref
        return uid in allowed_refs

    for path, ref in _walk_datasources(dashboard):
        uid = ref.get("uid") if isinstance(ref, Mapping) else ref
        builtin = isinstance(ref, Mapping) and ref.get("type") == "grafana"
        if not builtin and not _is_variable_ref(uid):
            problems.append(f"{path}: hard-coded datasource {ref!r}")
    for var in variables:
        if var.get("type") != "query":
            continue
        name = var.get("name")
        if not uses_variable(var.get("datasource")):
            problems.append(f"variable {name}: datasource is not the datasource variable")
        if not str(var.get("query", "")).startswith("label_values("):
            problems.append(f"variable {name}: query is not label_values(...)")
        if not (var.get("multi") and var.get("includeAll")):
            problems.append(f"variable {name}: not multi-select with All")
    names = {v.get("name") for v in variables}
    for required in (DS_VARIABLE, *VARIABLES):
        if required not in names:
            problems.append(f"variable {required} missing")
    top = list(dashboard.get("panels", []))
    ids = [p.get("id") for p in top] + [
        inner.get("id") for p in top if p.get("type") == "row" for inner in p.get("panels", [])
    ]
    for pid in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problems.append(f"panel id {pid} used more than once")
    for panel in panels_of(dashboard):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not uses_variable(panel.get("datasource")):
            problems.append(f"{title}: panel datasource is not the datasource variable")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        if unit in _UNITLESS:
            problems.append(f"{title}: no unit")
        description = panel.get("description", "")
        if not description:
            problems.append(f"{title}: no description")
        elif not description.startswith(QUESTIONS):
            problems.append(f"{title}: description does not open with one of the questions")
        if "?" not in title:
            problems.append(f"{title}: title is not a question")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{title}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            problems.append(f"{title}: refIds missing or repeated: {refs}")
        for target in targets:
            ref = target.get("refId")
            if "datasource" in target and not uses_variable(target["datasource"]):
                problems.append(f"{title} {ref}: target datasource is not the variable")
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{title} {ref}: empty expr")
            for func, window in rate_windows(expr):
                if window != RATE_INTERVAL:
                    problems.append(
                        f"{title} {ref}: {func}() over [{window}] instead of [{RATE_INTERVAL}]"
                    )
    return problems


# ---------------------------------------------------------------------------------- settings


def _changed_settings(cfg: DashboardsConfig) -> dict[str, Any]:
    out = {}
    for key, value in all_settings(cfg).items():
        if value != all_settings(DEFAULT_CONFIG)[key]:
            out[key] = value
    return out


def all_settings(cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """Every setting as plain data (``--print-config``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(DashboardsConfig):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_mapping(
    data: Mapping[str, Any], base: DashboardsConfig = DEFAULT_CONFIG
) -> DashboardsConfig:
    """``base`` with the settings in ``data`` (plain data, e.g. from YAML or JSON) applied."""
    return generate.apply_settings(base, data)


def _parse_value(raw: str) -> Any:
    """A ``--set`` value: YAML when PyYAML is installed, else JSON, else the plain string."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: Path, base: DashboardsConfig = DEFAULT_CONFIG) -> DashboardsConfig:
    """Settings from a JSON file, or YAML when PyYAML is installed."""
    parse = _parse_value if path.suffix in (".yaml", ".yml") else json.loads
    return config_from_mapping(generate.load_settings(path, parse), base)


def _dashboards_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasource",
        help="data source the datasource variable selects "
        "first (name or uid; default: asked on import)",
    )


def main(argv: list[str]) -> int:
    """``otel-jobtrack dashboards``: write (or ``--check``) the generated dashboards."""
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack dashboards",
        description="Generate the Grafana dashboards for otel-jobtrack metrics.",
    )
    generate.add_common_arguments(
        parser,
        "dashboards",
        config_help="JSON (or YAML) file of settings (see --print-config)",
        set_help="one setting, value in JSON/YAML syntax (repeatable)",
        print_help="print every setting as JSON (a starting point for --config)",
        extra=_dashboards_arguments,
    )
    gen = generate.Generator(
        prog="otel-jobtrack dashboards",
        default=DEFAULT_CONFIG,
        load_config=load_config,
        parse_value=_parse_value,
        config_from_mapping=config_from_mapping,
        option_keys=("selector", "datasource"),
        errors=(OSError, ValueError),
        dump_settings=lambda cfg: json.dumps(all_settings(cfg), indent=2) + "\n",
        stale_files=stale_files,
        write=write,
        shipped="dashboards",
        needs=generate.Needs("grafana_foundation_sdk", "grafana-foundation-sdk", "dashboards"),
        render=render,
    )
    return generate.run_generator(gen, parser.parse_args(argv))


__all__ = [
    "CRON_UID",
    "DEFAULT_CONFIG",
    "QUESTIONS",
    "SCHEDULE_UID",
    "BoardSpec",
    "DashboardsConfig",
    "PanelSpec",
    "RowSpec",
    "Target",
    "all_settings",
    "boards",
    "build",
    "config_from_mapping",
    "lint",
    "load_config",
    "main",
    "panels_of",
    "rate_windows",
    "render",
    "stale_files",
    "write",
]
