"""``otel-jobtrack report``: what the recurring jobs did over a period, for people.

It answers the questions the tracking pattern exists for, with numbers: did each cron run as
often as expected, did it find tenants to schedule, did a scheduler run but touch nothing, did
one tenant suddenly produce far more work, are failures isolated or global, is a job slower
because of more work or because each resource takes longer. Per cron trigger, scheduler and
worker it shows runs, resources and duration over the period as small charts; per tenant the
volume against the job's other tenants and against the previous period; and the ``JobTrack*``
alerts that fired, when and for how long (from the ``ALERTS`` series).

Formats: ``html`` (one self-contained file: inline CSS and SVG, no script, no external asset),
``png`` and ``pdf`` (that HTML rendered by a headless Chromium), ``csv`` (one row per job and per
job and tenant), ``md`` and ``json``. ``--webhook URL`` posts a Slack-compatible summary.

Like ``status``, every question is one PromQL query grouped by kind, job and tenant (or a
range query grouped by kind and job for the charts), read from the raw ``jobtrack_*`` series.
Counts come from ``increase()``, which extrapolates to the period's edges: they are estimates
that may be fractional, and the CSV and JSON keep them unrounded.

Exit status: 0 written (and posted), 2 bad command line, 3 query, rendering or webhook error,
4 no ``jobtrack_*`` data in the period.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import functools
import html
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from otel_jobtrack._core import contract as c
from otel_jobtrack.tools import _format as fmt
from otel_jobtrack.tools import _svg as svg
from otel_jobtrack.tools import browser
from otel_jobtrack.tools.query import (
    EXIT_OK,
    NoDataError,
    PromClient,
    QueryError,
    Re,
    Sample,
    Series,
    ToolError,
    add_connection_arguments,
    any_of,
    client_from_args,
    label_matchers,
)
from otel_jobtrack.tools.status import (
    ALERT_PREFIX,
    Cadence,
    _kinds_arg,
    duration_arg,
    parse_time,
    prom_duration,
)

FORMATS: Final = ("html", "png", "pdf", "csv", "md", "json")
BINARY_FORMATS: Final = ("png", "pdf")
WEBHOOK_ENV: Final = "JOBTRACK_WEBHOOK_URL"
KIND_TITLES: Final = {
    "cron": "Cron triggers",
    "schedule": "Schedulers",
    "resource": "Resource workers",
    "batch": "Batch workers",
}
_KIND_ORDER: Final = {k: i for i, k in enumerate(c.KINDS)}
STATE_COLORS: Final = {c.SUCCESS: "#2f9e44", c.FAILURE: "#e03131", c.LIMITED: "#f08c00"}
RESOURCE_COLOR: Final = "#4263eb"
DURATION_COLOR: Final = "#7048e8"
ALERT_COLORS: Final = {"critical": "#c92a2a", "warning": "#e67700", "info": "#1971c2"}

OK: Final = "ok"
WARN: Final = "warn"
BAD: Final = "bad"
_VERDICT_ORDER: Final = {BAD: 0, WARN: 1, OK: 2}

Key = tuple[str, str, str]


# ------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class ReportOptions:
    """The period, the filters and the thresholds behind the answers."""

    period: float = 86400.0
    until: float | None = None
    step: float | None = None
    kinds: tuple[str, ...] = ()
    job: str | None = None
    tenant: str | None = None
    selector: str = ""
    top: int = 20
    unusual_ratio: float = 5.0
    """A tenant this many times the job's median tenant is unusual."""
    change_ratio: float = 3.0
    """A tenant whose volume changed this many times against the previous period is unusual."""
    min_volume: float = 10.0
    """Below this many resources nothing counts as unusual volume."""
    expected_share: float = 0.9
    """A cron with fewer runs than this share of the expected count ran too rarely."""
    slower_ratio: float = 1.2
    """A mean duration or time per resource this much higher in the second half grew."""
    isolated_share: float = 0.8
    """Failures count as isolated when one job (or tenant) has this share of them."""


@dataclass
class Stats:
    """Numbers of one job (``tenant == ""``) or one job and tenant over the period."""

    kind: str
    job_name: str
    tenant: str = ""
    runs: dict[str, float] = field(default_factory=dict)
    resources: float | None = None
    duration_sum: float | None = None
    previous_runs: float | None = None
    previous_resources: float | None = None
    samples: float | None = None
    """Samples of the resources counter in the period (with ``previous_samples``: coverage)."""
    previous_samples: float | None = None
    last: dict[str, float] = field(default_factory=dict)
    tenants: int = 0

    @property
    def key(self) -> Key:
        return (self.kind, self.job_name, self.tenant)

    @property
    def total_runs(self) -> float:
        return sum(self.runs.values())

    def state(self, name: str) -> float:
        return self.runs.get(name, 0.0)

    def share(self, name: str) -> float | None:
        total = self.total_runs
        return self.state(name) / total if total > 0 else None

    def mean_duration(self) -> float | None:
        total = self.total_runs
        return self.duration_sum / total if self.duration_sum is not None and total > 0 else None

    def seconds_per_resource(self) -> float | None:
        if self.duration_sum is None or not self.resources or self.resources <= 0:
            return None
        return self.duration_sum / self.resources

    def previous_coverage(self) -> float | None:
        """How much of the previous period had data, relative to this one (1 = as much)."""
        if not self.samples or self.previous_samples is None:
            return None
        return self.previous_samples / self.samples

    def previous_scaled(self, value: float | None) -> float | None:
        """A previous-period count scaled to this period's coverage; ``None`` when under
        half of the previous period has data (a new job or tenant has no "before")."""
        coverage = self.previous_coverage()
        if value is None or coverage is None or coverage < 0.5:
            return None
        return value / coverage

    def vs_previous(self) -> float | None:
        """Resources against the previous period, or ``None`` without a comparable one."""
        prev = self.previous_scaled(self.previous_resources)
        if prev is None or prev <= 0 or self.resources is None:
            return None
        return self.resources / prev

    def resources_per_run(self) -> float | None:
        total = self.total_runs
        return self.resources / total if self.resources is not None and total > 0 else None

    def add(self, other: Stats) -> None:
        for state, n in other.runs.items():
            self.runs[state] = self.runs.get(state, 0.0) + n
        self.resources = _sum_opt(self.resources, other.resources)
        self.duration_sum = _sum_opt(self.duration_sum, other.duration_sum)
        self.previous_runs = _sum_opt(self.previous_runs, other.previous_runs)
        self.previous_resources = _sum_opt(self.previous_resources, other.previous_resources)
        self.samples = _sum_opt(self.samples, other.samples)
        self.previous_samples = _sum_opt(self.previous_samples, other.previous_samples)
        for state, t in other.last.items():
            self.last[state] = max(self.last.get(state, t), t)


@dataclass
class Unusual:
    """A tenant whose volume stands out, and why."""

    stats: Stats
    median: float | None
    vs_median: float | None
    vs_previous: float | None
    reasons: list[str]


@dataclass
class JobReport:
    """One job: totals, its tenants, the charts' series and what stood out."""

    stats: Stats
    cadence: Cadence
    p95: float | None = None
    tenants: list[Stats] = field(default_factory=list)
    steps: dict[str, list[float | None]] = field(default_factory=dict)
    expected_runs: float | None = None
    observed_from: float | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)
    """``(verdict, text)`` badges for the job's card."""

    @property
    def verdict(self) -> str:
        return min((v for v, _ in self.notes), key=_VERDICT_ORDER.__getitem__, default=OK)


@dataclass
class AlertEpisode:
    """One continuous stretch of a firing alert (to the range query's step)."""

    alertname: str
    labels: dict[str, str]
    start: float
    end: float
    ongoing: bool

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def subject(self) -> str:
        parts = [
            self.labels[k]
            for k in ("job_name", "tenant", "instance", "where", "exporter")
            if self.labels.get(k)
        ]
        return " / ".join(parts) or "-"


@dataclass
class AlertGroup:
    """Every episode of one alert on one subject: how often and how long in total."""

    alertname: str
    subject: str
    severity: str
    episodes: int
    seconds: float
    first: float
    last: float
    ongoing: bool


def alert_groups(episodes: Sequence[AlertEpisode]) -> list[AlertGroup]:
    """Episodes grouped by alert and subject, longest total firing time first."""
    groups: dict[tuple[str, str], AlertGroup] = {}
    for a in episodes:
        key = (a.alertname, a.subject())
        g = groups.get(key)
        if g is None:
            groups[key] = AlertGroup(
                a.alertname, a.subject(), a.severity, 1, a.seconds, a.start, a.end, a.ongoing
            )
            continue
        g.episodes += 1
        g.seconds += a.seconds
        g.first = min(g.first, a.start)
        if a.end >= g.last:
            g.last, g.ongoing = a.end, a.ongoing
    return sorted(
        groups.values(), key=lambda g: (g.severity != "critical", -g.seconds, g.alertname)
    )


@dataclass
class Answer:
    """One of the pattern's questions, answered for the period."""

    key: str
    question: str
    verdict: str
    summary: str
    details: list[str] = field(default_factory=list)


@dataclass
class Report:
    url: str
    start: float
    end: float
    step: float
    times: list[float]
    alert_step: float
    options: ReportOptions
    jobs: list[JobReport]
    total: Stats
    unusual: list[Unusual]
    zero_resources: list[Stats]
    alerts: list[AlertEpisode]
    answers: list[Answer] = field(default_factory=list)
    generated_at: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)

    @property
    def period(self) -> float:
        return self.end - self.start

    def tenant_rows(self) -> list[Stats]:
        return [t for j in self.jobs for t in j.tenants]

    def headline(self) -> dict[str, Any]:
        t = self.total
        fired = {(a.alertname, tuple(sorted(a.labels.items()))) for a in self.alerts}
        return {
            "runs": t.total_runs,
            "success_share": t.share(c.SUCCESS),
            "failures": t.state(c.FAILURE),
            "limited": t.state(c.LIMITED),
            "resources": t.resources,
            "jobs": len(self.jobs),
            "jobs_with_problems": sum(j.verdict != OK for j in self.jobs),
            "alerts_fired": len(fired),
            "alert_seconds": sum(a.seconds for a in self.alerts),
        }


def _sum_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _val(sample: Sample) -> float | None:
    return None if math.isnan(sample.value) else sample.value


# ------------------------------------------------------------------------------ queries


def choose_step(period: float, requested: float | None) -> float:
    """Chart resolution: ``requested``, or about 48 bars but never under a minute."""
    if requested:
        return requested
    return float(max(60, math.ceil(period / 48 / 60) * 60))


def queries(opts: ReportOptions, step: float) -> tuple[dict[str, str], dict[str, str]]:
    """Instant queries (at the period's end) and range queries (the charts)."""
    kinds = any_of(opts.kinds)
    job = Re(opts.job) if opts.job else None
    tenant = Re(opts.tenant) if opts.tenant else None
    every = label_matchers(opts.selector, kind=kinds, job_name=job, tenant=tenant)
    by_job = label_matchers(opts.selector, kind=kinds, job_name=job)
    p = prom_duration(opts.period)
    s = prom_duration(step)
    unit = "kind, job_name, tenant"

    def setting(metric: str, name: str) -> str:
        return f'label_replace(last_over_time({metric}{by_job}[{p}]), "setting", "{name}", "", "")'

    instant = {
        "runs": f"sum by ({unit}, state) (increase({c.RUNS_TOTAL}{every}[{p}]))",
        "resources": f"sum by ({unit}) (increase({c.RESOURCES_TOTAL}{every}[{p}]))",
        "duration_sum": f"sum by ({unit}) (increase({c.RUN_DURATION}_sum{every}[{p}]))",
        "p95": (
            f"histogram_quantile(0.95, sum by (kind, job_name, le) "
            f"(increase({c.RUN_DURATION}_bucket{every}[{p}])))"
        ),
        # The previous period, and how much of each period has samples: a tenant that
        # appeared halfway through the previous period did not grow "2x".
        "previous": "\nor ".join(
            f'label_replace(sum by ({unit}) ({fn}({metric}{every}[{p}]{offset})), "q", "{q}", '
            '"", "")'
            for q, fn, metric, offset in (
                ("runs", "increase", c.RUNS_TOTAL, f" offset {p}"),
                ("resources", "increase", c.RESOURCES_TOTAL, f" offset {p}"),
                ("previous_samples", "count_over_time", c.RESOURCES_TOTAL, f" offset {p}"),
                ("samples", "count_over_time", c.RESOURCES_TOTAL, ""),
            )
        ),
        "last_run": (
            f"max by ({unit}, state) (last_over_time({c.LAST_RUN_TIMESTAMP}{every}[{p}]))"
        ),
        "cadence": (
            "max by (kind, job_name, setting) (\n  "
            + "\n  or ".join(
                [
                    setting(c.EXPECTED_INTERVAL, "interval"),
                    setting(c.GRACE, "grace"),
                    setting(c.MAX_RUNTIME, "max_runtime"),
                ]
            )
            + "\n)"
        ),
    }
    ranged = {
        "runs": f"sum by (kind, job_name, state) (increase({c.RUNS_TOTAL}{every}[{s}]))",
        "resources": f"sum by (kind, job_name) (increase({c.RESOURCES_TOTAL}{every}[{s}]))",
        "duration_sum": (f"sum by (kind, job_name) (increase({c.RUN_DURATION}_sum{every}[{s}]))"),
        "p95": (
            f"histogram_quantile(0.95, sum by (kind, job_name, le) "
            f"(increase({c.RUN_DURATION}_bucket{every}[{s}])))"
        ),
        "alerts": f'ALERTS{{alertstate="firing", alertname=~"{ALERT_PREFIX}.*"}}',
    }
    return instant, ranged


def alert_step(period: float, step: float) -> float:
    """Resolution of the alert timeline: about a thousandth of the period, at least 1 s."""
    return float(min(step, max(1, math.ceil(period / 1000))))


def collect(client: PromClient, opts: ReportOptions) -> Report:
    """Query the API and build the report (no rendering)."""
    # Whole milliseconds, as the API's timestamps: the report's grid and the answers' points
    # then compare equal.
    end = round(time.time() if opts.until is None else opts.until, 3)
    start = end - opts.period
    step = choose_step(opts.period, opts.step)
    if step > opts.period:
        raise ToolError(f"--step ({fmt.duration(step)}) is longer than the period")
    n = max(1, int(opts.period // step))
    times = [end - (n - 1 - i) * step for i in range(n)]
    a_step = alert_step(opts.period, step)
    instant, ranged = queries(opts, step)
    calls: dict[str, Callable[[], Any]] = {}
    for name, q in instant.items():
        calls[f"i_{name}"] = functools.partial(client.query, q, end)
    for name, q in ranged.items():
        if name == "alerts":
            calls["r_alerts"] = functools.partial(
                client.query_range, q, start + a_step, end, a_step
            )
        else:
            calls[f"r_{name}"] = functools.partial(client.query_range, q, times[0], end, step)
    answers = client.run_all(calls)
    if not any(answers[k] for k in ("i_runs", "i_last_run", "i_resources")):
        filters = [
            f"{flag} {value}"
            for flag, value in (
                ("--kind", ",".join(opts.kinds)),
                ("--job", opts.job),
                ("--tenant", opts.tenant),
                ("--selector", opts.selector),
            )
            if value
        ]
        where = f" matching {', '.join(filters)}" if filters else ""
        hint = "check the filters" if filters else "is it scraping an otel-jobtrack endpoint?"
        raise NoDataError(
            f"no jobtrack_* data{where} at {client.url} between {_utc(start)} and {_utc(end)}: "
            f"is the period right (--since, --until)? {hint}"
        )
    report = build(answers, opts, start, end, step, times, a_step)
    report.url = client.url
    report.warnings = list(client.warnings)
    return report


# ------------------------------------------------------------------------------ analysis


def _stats_from(answers: Mapping[str, Any]) -> dict[Key, Stats]:
    units: dict[Key, Stats] = {}

    def unit(labels: Mapping[str, str]) -> Stats:
        key = (labels.get("kind", ""), labels.get("job_name", ""), labels.get("tenant", ""))
        if key not in units:
            units[key] = Stats(*key, tenants=1)
        return units[key]

    for s in answers["i_runs"]:
        v = _val(s)
        if v is not None:
            st = unit(s.labels)
            state = s.labels.get("state", "")
            st.runs[state] = st.runs.get(state, 0.0) + v
    for s in answers["i_resources"]:
        unit(s.labels).resources = _val(s)
    for s in answers["i_duration_sum"]:
        unit(s.labels).duration_sum = _val(s)
    for s in answers["i_previous"]:
        key = (s.labels.get("kind", ""), s.labels.get("job_name", ""), s.labels.get("tenant", ""))
        if key not in units:
            continue  # gone this period: the report is about the period
        q = s.labels.get("q")
        if q == "runs":
            units[key].previous_runs = _val(s)
        elif q == "resources":
            units[key].previous_resources = _val(s)
        elif q == "samples":
            units[key].samples = _val(s)
        elif q == "previous_samples":
            units[key].previous_samples = _val(s)
    for s in answers["i_last_run"]:
        v = _val(s)
        if v is not None and v > 0:
            unit(s.labels).last[s.labels.get("state", "")] = v
    return units


def _cadences(samples: Sequence[Sample]) -> dict[tuple[str, str], Cadence]:
    out: dict[tuple[str, str], Cadence] = {}
    for s in samples:
        cad = out.setdefault((s.labels.get("kind", ""), s.labels.get("job_name", "")), Cadence())
        v = _val(s)
        name = s.labels.get("setting")
        if name == "interval" and v:
            cad.interval = v
        elif name == "grace":
            cad.grace = v
        elif name == "max_runtime" and v:
            cad.max_runtime = v
    return out


def _align(series: Sequence[Series], times: Sequence[float]) -> dict[Any, list[float | None]]:
    """Range answers keyed by (kind, job_name[, state]) on the report's time grid."""
    index = {round(t, 3): i for i, t in enumerate(times)}
    out: dict[Any, list[float | None]] = {}
    for s in series:
        key: Any = (s.labels.get("kind", ""), s.labels.get("job_name", ""))
        if "state" in s.labels:
            key = (*key, s.labels["state"])
        values: list[float | None] = out.setdefault(key, [None] * len(times))
        for t, v in s.points:
            i = index.get(round(t, 3))
            if i is not None and not math.isnan(v):
                values[i] = v
    return out


def alert_episodes(series: Sequence[Series], step: float, end: float) -> list[AlertEpisode]:
    """Stretches of consecutive firing samples; a gap longer than 1.5 steps ends one. Each
    sample stands for the step before it, so one sample is one step of firing."""
    out = []
    for s in series:
        labels = {k: v for k, v in s.labels.items() if k not in ("__name__", "alertstate")}
        name = labels.pop("alertname", "?")
        points = sorted(t for t, v in s.points if not math.isnan(v))
        run: list[float] = []
        for t in points:
            if run and t - run[-1] > 1.5 * step:
                out.append(AlertEpisode(name, dict(labels), run[0] - step, run[-1], False))
                run = []
            run.append(t)
        if run:
            ongoing = end - run[-1] < 1.5 * step
            out.append(AlertEpisode(name, dict(labels), run[0] - step, run[-1], ongoing))
    out.sort(key=lambda a: (a.start, a.alertname, a.subject()))
    return out


def find_unusual(jobs: Sequence[JobReport], opts: ReportOptions) -> list[Unusual]:
    """Tenants far above their job's median tenant, or far from their own previous period."""
    out = []
    for job in jobs:
        tenants = [t for t in job.tenants if t.resources is not None]
        volumes = [t.resources for t in tenants if t.resources is not None]
        median = statistics.median(volumes) if len(volumes) >= 3 else None
        for t in tenants:
            r = t.resources or 0.0
            reasons = []
            vs_median = r / median if median else None
            if vs_median is not None and vs_median >= opts.unusual_ratio and r >= opts.min_volume:
                reasons.append(f"{fmt.ratio(vs_median)} the median tenant")
            vs_prev = t.vs_previous()
            prev = t.previous_scaled(t.previous_resources)
            if vs_prev is not None and prev is not None and max(r, prev) >= opts.min_volume:
                if vs_prev >= opts.change_ratio:
                    reasons.append(f"{fmt.ratio(vs_prev)} the previous period")
                elif vs_prev <= 1 / opts.change_ratio:
                    reasons.append(f"{fmt.share(vs_prev)} of the previous period")
            if reasons:
                out.append(Unusual(t, median, vs_median, vs_prev, reasons))
    out.sort(
        key=lambda u: (
            -max(
                u.vs_median or 0,
                u.vs_previous or 0,
                1 / u.vs_previous if u.vs_previous else 0,
            )
        )
    )
    return out


def _halves(values: Sequence[float | None]) -> tuple[float, float]:
    mid = len(values) // 2
    first = sum(v for v in values[:mid] if v is not None)
    second = sum(v for v in values[mid:] if v is not None)
    return first, second


def duration_trend(job: JobReport, opts: ReportOptions) -> str | None:
    """Why the mean duration grew between the period's halves, or ``None`` if it did not."""
    runs = [
        _sum_opt(_sum_opt(a, b), d)
        for a, b, d in zip(
            job.steps.get(c.SUCCESS, []),
            job.steps.get(c.FAILURE, []),
            job.steps.get(c.LIMITED, []),
            strict=False,
        )
    ]
    r1, r2 = _halves(runs)
    d1, d2 = _halves(job.steps.get("duration_sum", []))
    if r1 < 1 or r2 < 1 or d1 <= 0:
        return None
    m1, m2 = d1 / r1, d2 / r2
    if m2 < opts.slower_ratio * m1:
        return None
    grew = f"mean duration {fmt.duration(m1)} -> {fmt.duration(m2)} ({fmt.ratio(m2 / m1)})"
    q1, q2 = _halves(job.steps.get("resources", []))
    if q1 > 0 and q2 > 0:
        s1, s2 = d1 / q1, d2 / q2
        per = f"time per resource {fmt.duration(s1)} -> {fmt.duration(s2)}"
        if s2 >= opts.slower_ratio * s1:
            return f"slower: {grew}, {per}"
        if q2 / r2 >= opts.slower_ratio * (q1 / r1):
            return (
                f"more work: {grew}, resources per run {fmt.count(q1 / r1)} -> "
                f"{fmt.count(q2 / r2)}, {per}"
            )
        return f"slower: {grew}, about as many resources per run"
    return f"slower: {grew} (no resources counted)"


def _cron_runs(job: JobReport, opts: ReportOptions, end: float) -> tuple[str, str]:
    st = job.stats
    runs = st.total_runs
    if job.cadence.interval and job.observed_from is not None:
        span = end - job.observed_from
        job.expected_runs = span / job.cadence.interval
        share = runs / job.expected_runs if job.expected_runs > 0 else 1.0
        text = (
            f"{fmt.count(runs)} runs, expected at least {fmt.count(job.expected_runs)} "
            f"(every {fmt.duration(job.cadence.interval)}): {fmt.share(share)}"
        )
        return (OK if share >= opts.expected_share else BAD), text
    previous = st.previous_scaled(st.previous_runs)
    if previous:
        ratio = runs / previous
        text = f"{fmt.count(runs)} runs, {fmt.count(previous)} in the previous period"
        return (OK if ratio >= opts.expected_share else WARN), text
    return OK, f"{fmt.count(runs)} runs (no declared cadence, no previous period to compare)"


def build(
    answers: Mapping[str, Any],
    opts: ReportOptions,
    start: float,
    end: float,
    step: float,
    times: list[float],
    a_step: float,
) -> Report:
    """The report model from the API's answers (pure: unit-testable without a server)."""
    units = _stats_from(answers)
    cadences = _cadences(answers["i_cadence"])
    jobs: dict[tuple[str, str], JobReport] = {}
    for (kind, job_name, _tenant), st in sorted(units.items()):
        jr = jobs.get((kind, job_name))
        if jr is None:
            jr = JobReport(Stats(kind, job_name), cadences.get((kind, job_name), Cadence()))
            jobs[(kind, job_name)] = jr
        jr.stats.add(st)
        jr.stats.tenants += 1
        jr.tenants.append(st)
    for s in answers["i_p95"]:
        key = (s.labels.get("kind", ""), s.labels.get("job_name", ""))
        if key in jobs:
            jobs[key].p95 = _val(s)
    runs_steps = _align(answers["r_runs"], times)
    resources_steps = _align(answers["r_resources"], times)
    duration_steps = _align(answers["r_duration_sum"], times)
    p95_steps = _align(answers["r_p95"], times)
    for key, jr in jobs.items():
        for state in c.STATES:
            jr.steps[state] = runs_steps.get((*key, state), [None] * len(times))
        jr.steps["resources"] = resources_steps.get(key, [None] * len(times))
        jr.steps["duration_sum"] = duration_steps.get(key, [None] * len(times))
        jr.steps["p95"] = p95_steps.get(key, [None] * len(times))
        seen = [
            times[i] - step
            for i in range(len(times))
            if any(jr.steps[s][i] is not None for s in c.STATES)
        ]
        jr.observed_from = max(start, min(seen)) if seen else None
        jr.tenants.sort(key=lambda t: (-(t.resources or 0), t.tenant))
    ordered = sorted(
        jobs.values(), key=lambda j: (_KIND_ORDER.get(j.stats.kind, 9), j.stats.job_name)
    )
    total = Stats("", "")
    for jr in ordered:
        total.add(jr.stats)
    unusual = find_unusual(ordered, opts)
    zero = [
        t
        for jr in ordered
        if jr.stats.kind in ("cron", "schedule")
        for t in jr.tenants
        if t.state(c.SUCCESS) > 0 and t.resources is not None and t.resources == 0
    ]
    report = Report(
        url="",
        start=start,
        end=end,
        step=step,
        times=times,
        alert_step=a_step,
        options=opts,
        jobs=ordered,
        total=total,
        unusual=unusual,
        zero_resources=zero,
        alerts=alert_episodes(answers["r_alerts"], a_step, end),
    )
    _annotate(report)
    report.answers = answer_questions(report)
    return report


def _annotate(report: Report) -> None:
    """Badges on each job's card: the same verdicts the answers summarise."""
    opts = report.options
    unusual_keys = {u.stats.key for u in report.unusual}
    zero_keys = {t.key for t in report.zero_resources}
    for job in report.jobs:
        st = job.stats
        if st.kind == "cron" or job.cadence.interval:
            verdict, text = _cron_runs(job, opts, report.end)
            job.notes.append((verdict, text))
        fail = st.share(c.FAILURE)
        if fail:
            job.notes.append((BAD if fail > 0.1 else WARN, f"{fmt.share(fail)} of runs failed"))
        limited = st.share(c.LIMITED)
        if limited and limited > 0.25:
            job.notes.append((WARN, f"{fmt.share(limited)} of runs limited"))
        zero = [t.tenant for t in job.tenants if t.key in zero_keys]
        if zero:
            job.notes.append((WARN, f"zero resources: {', '.join(zero[:5])}"))
        odd = [t.tenant for t in job.tenants if t.key in unusual_keys]
        if odd:
            job.notes.append((WARN, f"unusual volume: {', '.join(odd[:5])}"))
        trend = duration_trend(job, opts)
        if trend:
            job.notes.append((WARN, trend))
        fired = sorted(
            {
                a.alertname
                for a in report.alerts
                if a.labels.get("kind") == st.kind and a.labels.get("job_name") == st.job_name
            }
        )
        if fired:
            job.notes.append((WARN, f"alerts: {', '.join(fired)}"))


def answer_questions(report: Report) -> list[Answer]:
    """The six questions of the tracking pattern, each with a verdict and the numbers."""
    opts = report.options
    out = []
    crons = [j for j in report.jobs if j.stats.kind == "cron"]

    # 1. Did each cron run as often as expected?
    details, worst = [], OK
    for job in crons:
        verdict, text = _cron_runs(job, opts, report.end)
        worst = min(worst, verdict, key=_VERDICT_ORDER.__getitem__)
        details.append(f"{_mark(verdict)} {job.stats.job_name}: {text}")
    short = [j for j in crons if _cron_runs(j, opts, report.end)[0] != OK]
    summary = (
        "no cron job in the period"
        if not crons
        else f"all {len(crons)} cron jobs ran as often as expected"
        if not short
        else f"{len(short)} of {len(crons)} cron jobs ran less often than expected: "
        + ", ".join(j.stats.job_name for j in short)
    )
    out.append(
        Answer("cron_runs", "Did each cron run as often as expected?", worst, summary, details)
    )

    # 2. Did it find any tenants?
    details, worst = [], OK
    for job in crons:
        st = job.stats
        found = st.resources or 0.0
        ran = [i for i, t in enumerate(report.times) if _runs_at(job, i) > 0]
        empty = [i for i in ran if not (job.steps["resources"][i] or 0)]
        per_run = st.resources_per_run()
        if st.state(c.SUCCESS) > 0 and found == 0:
            verdict = BAD
            text = f"scheduled nothing in {fmt.count(st.total_runs)} runs"
        elif empty:
            verdict = WARN
            text = (
                f"scheduled {fmt.count(found)} ({fmt.count(per_run)} per run); nothing in "
                f"{len(empty)} of {len(ran)} intervals it ran in"
            )
        else:
            verdict = OK
            text = f"scheduled {fmt.count(found)} ({fmt.count(per_run)} per run)"
        worst = min(worst, verdict, key=_VERDICT_ORDER.__getitem__)
        details.append(f"{_mark(verdict)} {st.job_name}: {text}")
    empty_crons = [d for d in details if not d.startswith(_mark(OK))]
    summary = (
        "no cron job in the period"
        if not crons
        else "every cron job found work to schedule"
        if not empty_crons
        else f"{len(empty_crons)} of {len(crons)} cron jobs found nothing at least once"
    )
    out.append(Answer("found_tenants", "Did it find any tenants?", worst, summary, details))

    # 3. Did a scheduler run but touch zero resources?
    zero = report.zero_resources
    details = [
        f"{z.job_name} / {z.tenant}: {fmt.count(z.state(c.SUCCESS))} successful runs, 0 resources"
        for z in zero
    ]
    summary = (
        "every scheduler that ran touched resources"
        if not zero
        else f"{len(zero)} scheduler/tenant pair(s) ran and touched nothing: "
        + ", ".join(f"{z.job_name} / {z.tenant}" for z in zero[:5])
    )
    out.append(
        Answer(
            "zero_resources",
            "Did a scheduler run but touch zero resources?",
            WARN if zero else OK,
            summary,
            details,
        )
    )

    # 4. Did one tenant suddenly enqueue far more work than usual?
    odd = report.unusual
    details = [
        f"{u.stats.tenant} in {u.stats.job_name}: {fmt.count(u.stats.resources)} resources, "
        + "; ".join(u.reasons)
        for u in odd
    ]
    summary = (
        "no tenant's volume stood out"
        if not odd
        else f"{len(odd)} tenant(s) stood out: "
        + ", ".join(f"{u.stats.tenant} ({u.reasons[0]})" for u in odd[:3])
    )
    out.append(
        Answer(
            "unusual_tenants",
            "Did one tenant suddenly enqueue far more work than usual?",
            WARN if odd else OK,
            summary,
            details,
        )
    )

    # 5. Are failures isolated to one scheduler or global?
    out.append(_failures_answer(report))

    # 6. Is duration growing because of more work or because something got slower?
    details = []
    for job in report.jobs:
        trend = duration_trend(job, opts)
        if trend:
            details.append(f"{job.stats.job_name}: {trend}")
    slower = [d for d in details if ": slower" in d]
    more = [d for d in details if ": more work" in d]
    if not details:
        summary = (
            f"no job's mean duration grew by {fmt.share(opts.slower_ratio - 1)} or more "
            "between the period's halves"
        )
    else:
        summary = f"{len(slower)} job(s) got slower per resource, {len(more)} got more work"
    out.append(
        Answer(
            "duration",
            "Is duration growing because of more work or because something got slower?",
            WARN if slower else OK,
            summary,
            details,
        )
    )
    return out


def _runs_at(job: JobReport, i: int) -> float:
    return sum(job.steps[s][i] or 0.0 for s in c.STATES)


def _failures_answer(report: Report) -> Answer:
    opts = report.options
    question = "Are failures isolated to one scheduler or global?"
    total = report.total.state(c.FAILURE)
    if total < 0.5:
        return Answer("failures", question, OK, "no failures in the period")
    by_job = sorted(
        ((j.stats.state(c.FAILURE), j.stats.job_name) for j in report.jobs), reverse=True
    )
    by_tenant = sorted(
        (
            (t.state(c.FAILURE), f"{t.job_name} / {t.tenant}")
            for j in report.jobs
            for t in j.tenants
        ),
        reverse=True,
    )
    failing_jobs = [name for n, name in by_job if n >= 0.5]
    failing_tenants = [name for n, name in by_tenant if n >= 0.5]
    details = [
        f"{name}: {fmt.count(n)} failures ({fmt.share(n / total)})"
        for n, name in by_tenant
        if n >= 0.5
    ][:10]
    share = report.total.share(c.FAILURE)
    top_n, top_name = by_tenant[0]
    if top_n / total >= opts.isolated_share:
        summary = (
            f"isolated: {top_name} had {fmt.count(top_n)} of {fmt.count(total)} failures "
            f"({fmt.share(top_n / total)})"
        )
        verdict = WARN
    elif by_job[0][0] / total >= opts.isolated_share:
        summary = (
            f"isolated to one job: {by_job[0][1]} had {fmt.count(by_job[0][0])} of "
            f"{fmt.count(total)} failures, across {len(failing_tenants)} tenant(s)"
        )
        verdict = WARN
    else:
        summary = (
            f"spread: {fmt.count(total)} failures ({fmt.share(share)} of runs) in "
            f"{len(failing_jobs)} jobs and {len(failing_tenants)} job/tenant pairs"
        )
        verdict = BAD
    return Answer("failures", question, verdict, summary, details)


def _mark(verdict: str) -> str:
    return {OK: "OK", WARN: "WARN", BAD: "BAD"}[verdict]


# ------------------------------------------------------------------------------ rendering


def _utc(t: float | None, seconds: bool = True) -> str:
    if t is None:
        return fmt.DASH
    moment = dt.datetime.fromtimestamp(t, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _title(report: Report) -> str:
    return f"Recurring jobs, last {fmt.duration(report.period)}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS: Final = """
:root { --ok:#2f9e44; --warn:#e67700; --bad:#e03131; --ink:#1f2328; --mute:#5c6370;
        --line:#e3e6ea; --card:#fbfbfc; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
       sans-serif; color: var(--ink); margin: 24px 32px; background: #fff; font-size: 14px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 8px; font-family: "DejaVu Sans Mono", Menlo, Consolas,
     monospace; word-break: break-all; }
.period { color: var(--mute); margin: 0 0 16px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; min-width: 118px;
        background: var(--card); }
.tile b { display: block; font-size: 22px; }
.tile span { color: var(--mute); font-size: 12px; text-transform: uppercase;
             letter-spacing: .04em; }
.tile.bad b { color: var(--bad); } .tile.warn b { color: var(--warn); }
.answers { list-style: none; padding: 0; margin: 0; }
.answers > li { border-left: 4px solid var(--ok); padding: 6px 10px; margin: 6px 0;
                background: var(--card); }
.answers > li.warn { border-color: var(--warn); }
.answers > li.bad { border-color: var(--bad); }
.answers .q { font-weight: 600; }
.answers ul { margin: 4px 0 0; padding-left: 18px; color: var(--mute); font-size: 13px; }
.job { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 10px 0;
       background: var(--card); break-inside: avoid; page-break-inside: avoid; }
.job.bad { border-left: 5px solid var(--bad); } .job.warn { border-left: 5px solid var(--warn); }
.kind { font-family: system-ui, sans-serif; font-size: 11px; color: var(--mute);
        border: 1px solid var(--line); border-radius: 4px; padding: 1px 5px; margin-left: 6px;
        vertical-align: middle; }
.badges { margin: 0 0 8px; }
.badge { display: inline-block; font-size: 12px; border-radius: 10px; padding: 2px 8px;
         margin: 2px 4px 2px 0; background: #ebfbee; color: #2b8a3e; }
.badge.warn { background: #fff4e6; color: #d9480f; }
.badge.bad { background: #fff5f5; color: #c92a2a; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line);
         vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.nums td:first-child { color: var(--mute); }
tr.warn td { background: #fff9f0; } tr.bad td { background: #fff5f5; }
.mute { color: var(--mute); }
footer { margin-top: 32px; color: var(--mute); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 8px; }
.legend { color: var(--mute); font-size: 12px; margin: 0 0 6px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 8px;
          vertical-align: middle; }
svg.chart { background: #fff; border: 1px solid var(--line); border-radius: 6px; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; } }
"""


def _tiles(report: Report) -> str:
    h = report.headline()
    fail_cls = "bad" if h["failures"] >= 0.5 else ""
    tiles = [
        ("Runs", fmt.count(h["runs"]), ""),
        ("Succeeded", fmt.share(h["success_share"]), ""),
        ("Failed", fmt.count(h["failures"]), fail_cls),
        ("Limited", fmt.count(h["limited"]), "warn" if h["limited"] >= 0.5 else ""),
        ("Resources", fmt.count(h["resources"]), ""),
        ("Jobs", f"{h['jobs']}", ""),
        (
            "Jobs with findings",
            f"{h['jobs_with_problems']}",
            "warn" if h["jobs_with_problems"] else "",
        ),
        ("Alerts fired", f"{h['alerts_fired']}", "bad" if h["alerts_fired"] else ""),
    ]
    return (
        '<section class="tiles">'
        + "".join(
            f'<div class="tile {cls}"><span>{_e(name)}</span><b>{_e(value)}</b></div>'
            for name, value, cls in tiles
        )
        + "</section>"
    )


def _answers_html(report: Report) -> str:
    items = []
    for a in report.answers:
        details = "".join(f"<li>{_e(d)}</li>" for d in a.details[:12])
        items.append(
            f'<li class="{a.verdict}" data-answer="{a.key}"><span class="q">{_e(a.question)}</span>'
            f" {_e(a.summary)}" + (f"<ul>{details}</ul>" if details else "") + "</li>"
        )
    return (
        '<section id="answers"><h2>Answers</h2><ul class="answers">'
        + "".join(items)
        + "</ul></section>"
    )


def _job_numbers(job: JobReport, report: Report) -> list[tuple[str, str]]:
    st = job.stats
    rows = [("Runs", fmt.count(st.total_runs))]
    if job.expected_runs is not None:
        rows.append(("Expected", f">= {fmt.count(job.expected_runs)}"))
    if job.cadence.interval:
        grace = f" + {fmt.duration(job.cadence.grace)} grace" if job.cadence.grace else ""
        rows.append(("Declared", f"every {fmt.duration(job.cadence.interval)}{grace}"))
    rows += [
        ("Succeeded", fmt.share(st.share(c.SUCCESS))),
        ("Failed", f"{fmt.count(st.state(c.FAILURE))} ({fmt.share(st.share(c.FAILURE))})"),
        ("Limited", f"{fmt.count(st.state(c.LIMITED))} ({fmt.share(st.share(c.LIMITED))})"),
        ("Resources", f"{fmt.count(st.resources)} ({fmt.count(st.resources_per_run())}/run)"),
        ("Mean / p95", f"{fmt.duration(st.mean_duration())} / {fmt.duration(job.p95)}"),
        ("Per resource", fmt.duration(st.seconds_per_resource())),
    ]
    if st.tenants > 1 or (job.tenants and job.tenants[0].tenant != c.SYSTEM_TENANT):
        rows.append(("Tenants", f"{st.tenants}"))
    last = st.last.get(c.SUCCESS)
    rows.append(
        (
            "Last success",
            fmt.DASH if last is None else f"{fmt.duration(report.end - last)} before the end",
        )
    )
    coverage = st.previous_coverage()
    if coverage is not None and coverage >= 0.5:
        note = "" if coverage >= 0.95 else f" (scaled, {fmt.share(coverage)} covered)"
        rows.append(
            (
                "Previous period",
                f"{fmt.count(st.previous_scaled(st.previous_runs))} runs, "
                f"{fmt.count(st.previous_scaled(st.previous_resources))} resources{note}",
            )
        )
    elif coverage is not None and coverage > 0:
        rows.append(("Previous period", f"only {fmt.share(coverage)} covered"))
    return rows


JOB_CHART_WIDTH: Final = 248


def _job_charts(job: JobReport, report: Report) -> list[str]:
    times, step = report.times, report.step
    w = JOB_CHART_WIDTH
    return [
        svg.bars(
            "runs",
            f"Runs per {fmt.duration(step)}",
            times,
            step,
            [(s, STATE_COLORS[s], job.steps[s]) for s in c.STATES],
            width=w,
        ),
        svg.bars(
            "resources",
            f"Resources per {fmt.duration(step)}",
            times,
            step,
            [("resources", RESOURCE_COLOR, job.steps["resources"])],
            width=w,
        ),
        svg.line(
            "duration",
            "p95 duration",
            times,
            step,
            job.steps["p95"],
            DURATION_COLOR,
            width=w,
        ),
    ]


def _tenant_chart(job: JobReport, report: Report) -> str:
    opts = report.options
    odd = {u.stats.key for u in report.unusual}
    tenants = [t for t in job.tenants if t.resources is not None]
    shown = tenants[: opts.top] + [t for t in tenants[opts.top :] if t.key in odd]
    volumes = [t.resources or 0.0 for t in tenants]
    median = statistics.median(volumes) if len(volumes) >= 3 else None
    return svg.hbars(
        "tenants",
        f"Resources per tenant ({len(tenants)} tenants; dashed: median)",
        [(t.tenant, t.resources or 0.0, t.key in odd) for t in shown],
        reference=median,
    )


def _job_html(job: JobReport, report: Report) -> str:
    st = job.stats
    badges = "".join(f'<span class="badge {v}">{_e(t)}</span>' for v, t in job.notes) or (
        '<span class="badge">nothing unusual</span>'
    )
    nums = "".join(
        f"<tr><td>{_e(k)}</td><td class='n'>{_e(v)}</td></tr>" for k, v in _job_numbers(job, report)
    )
    charts = "".join(_job_charts(job, report))
    tenants = ""
    if len(job.tenants) > 1:
        tenants = f'<div class="row">{_tenant_chart(job, report)}</div>'
    return (
        f'<article class="job {job.verdict}" data-job="{_e(st.job_name)}">'
        f'<h3>{_e(st.job_name)}<span class="kind">{_e(st.kind)}</span></h3>'
        f'<div class="badges">{badges}</div>'
        f'<div class="row"><table class="nums">{nums}</table>{charts}</div>{tenants}</article>'
    )


def _tenants_table(report: Report) -> str:
    opts = report.options
    odd = {u.stats.key: u for u in report.unusual}
    zero = {t.key for t in report.zero_resources}
    rows = [t for t in report.tenant_rows() if t.tenant != c.SYSTEM_TENANT]
    if not rows:
        return '<p class="mute">No job with tenants in the period (only system jobs).</p>'
    medians: dict[tuple[str, str], float] = {}
    for job in report.jobs:
        vols = [t.resources or 0.0 for t in job.tenants]
        if len(vols) >= 3:
            medians[(job.stats.kind, job.stats.job_name)] = statistics.median(vols)

    def rank(t: Stats) -> tuple[int, float]:
        flagged = t.key in odd or t.key in zero or (t.share(c.FAILURE) or 0) > 0.1
        return (0 if flagged else 1, -(t.resources or 0))

    rows.sort(key=rank)
    shown = [t for t in rows if rank(t)[0] == 0] + [t for t in rows if rank(t)[0] == 1][: opts.top]
    body = []
    for t in shown:
        median = medians.get((t.kind, t.job_name))
        u = odd.get(t.key)
        cls = "warn" if (u or t.key in zero) else ""
        if (t.share(c.FAILURE) or 0) > 0.1:
            cls = "bad"
        vs_prev = t.vs_previous()
        vs_median = fmt.ratio((t.resources or 0) / median) if median else fmt.DASH
        note = "; ".join(u.reasons) if u else ("ran, touched nothing" if t.key in zero else "")
        body.append(
            f'<tr class="{cls}" data-tenant="{_e(t.tenant)}"><td>{_e(t.tenant)}</td>'
            f"<td>{_e(t.job_name)}</td><td class='n'>{_e(fmt.count(t.total_runs))}</td>"
            f"<td class='n'>{_e(fmt.share(t.share(c.FAILURE)))}</td>"
            f"<td class='n'>{_e(fmt.share(t.share(c.LIMITED)))}</td>"
            f"<td class='n'>{_e(fmt.count(t.resources))}</td>"
            f"<td class='n'>{_e(vs_median)}</td>"
            f"<td class='n'>{_e(fmt.ratio(vs_prev))}</td>"
            f"<td class='n'>{_e(fmt.duration(t.seconds_per_resource()))}</td>"
            f"<td>{_e(note)}</td></tr>"
        )
    hidden = len(rows) - len(shown)
    more = f'<p class="mute">{hidden} more rows in the CSV format.</p>' if hidden > 0 else ""
    return (
        "<table><tr><th>Tenant</th><th>Job</th><th class='n'>Runs</th><th class='n'>Failed</th>"
        "<th class='n'>Limited</th><th class='n'>Resources</th><th class='n'>vs median</th>"
        "<th class='n'>vs previous</th><th class='n'>Per resource</th><th>Finding</th></tr>"
        + "".join(body)
        + "</table>"
        + more
    )


def _alerts_html(report: Report) -> str:
    if not report.alerts:
        return '<p class="mute">No JobTrack alert fired in the period.</p>'
    lanes: dict[str, list[tuple[float, float]]] = {}
    colors: dict[str, str] = {}
    for a in report.alerts:
        label = f"{a.alertname} {a.subject()}"
        lanes.setdefault(label, []).append((a.start, a.end))
        colors[label] = ALERT_COLORS.get(a.severity, "#868e96")
    chart = svg.timeline(
        "alerts",
        "Firing alerts",
        report.start,
        report.end,
        [(label, spans, colors[label]) for label, spans in lanes.items()],
        width=1100,
    )
    rows = "".join(
        f"<tr class='{'bad' if g.severity == 'critical' else 'warn'}'><td>{_e(g.alertname)}</td>"
        f"<td>{_e(g.subject)}</td><td>{_e(g.severity or fmt.DASH)}</td>"
        f"<td class='n'>{g.episodes}</td><td class='n'>{_e(fmt.duration(g.seconds))}</td>"
        f"<td>{_e(_utc(g.first))}</td>"
        f"<td>{_e('still firing' if g.ongoing else _utc(g.last))}</td></tr>"
        for g in alert_groups(report.alerts)
    )
    return (
        f'<div class="row">{chart}</div><table><tr><th>Alert</th><th>Job / tenant</th>'
        "<th>Severity</th><th class='n'>Times</th><th class='n'>Firing in total</th>"
        f"<th>First fired</th><th>Last until</th></tr>{rows}</table>"
    )


_LEGEND: Final = (
    '<p class="legend">Runs: '
    + " ".join(
        f'<span class="swatch" style="background:{color}"></span>{state}'
        for state, color in STATE_COLORS.items()
    )
    + f' &middot; <span class="swatch" style="background:{RESOURCE_COLOR}"></span>resources'
    + f' &middot; <span class="swatch" style="background:{DURATION_COLOR}"></span>p95 duration'
    + "</p>"
)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    sections = []
    for kind in c.KINDS:
        jobs = [j for j in report.jobs if j.stats.kind == kind]
        if jobs:
            sections.append(
                f'<section id="{kind}"><h2>{_e(KIND_TITLES[kind])} ({len(jobs)})</h2>'
                + _LEGEND
                + "".join(_job_html(j, report) for j in jobs)
                + "</section>"
            )
    warnings = "".join(f'<p class="mute">Server warning: {_e(w)}</p>' for w in report.warnings)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{_e(_title(report))}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(_title(report))}</h1><p class='period'>{_e(_utc(report.start))} to "
        f"{_e(_utc(report.end))} &middot; {_e(report.url)} &middot; bars per "
        f"{_e(fmt.duration(report.step))}</p></header>"
        + _tiles(report)
        + _answers_html(report)
        + "".join(sections)
        + '<section id="tenants"><h2>Tenants</h2>'
        + _tenants_table(report)
        + "</section>"
        + '<section id="alerts"><h2>Alerts</h2>'
        + _alerts_html(report)
        + "</section>"
        + warnings
        + "<footer>Made by otel-jobtrack report at "
        f"{_e(_utc(report.generated_at))}. Counts are PromQL increase() over the period or "
        "the bar's interval: extrapolated estimates, rounded here. Expected runs assume the "
        "declared interval from the job's first run in the period. Alert times are to the "
        f"nearest {_e(fmt.duration(report.alert_step))}.</footer></body></html>\n"
    )


def render_markdown(report: Report) -> str:
    """The report as Markdown: headline, answers, per-kind tables with sparklines, alerts."""
    h = report.headline()
    lines = [
        f"# {_title(report)}",
        "",
        f"{_utc(report.start)} to {_utc(report.end)} ({report.url})",
        "",
        f"- **Runs:** {fmt.count(h['runs'])} ({fmt.share(h['success_share'])} succeeded, "
        f"{fmt.count(h['failures'])} failed, {fmt.count(h['limited'])} limited)",
        f"- **Resources:** {fmt.count(h['resources'])}",
        f"- **Jobs:** {h['jobs']} ({h['jobs_with_problems']} with findings)",
        f"- **Alerts fired:** {h['alerts_fired']}",
        "",
        "## Answers",
        "",
    ]
    for a in report.answers:
        lines.append(f"- **{_mark(a.verdict)}** {a.question} {a.summary}")
        lines.extend(f"  - {d}" for d in a.details[:12])
    for kind in c.KINDS:
        jobs = [j for j in report.jobs if j.stats.kind == kind]
        if not jobs:
            continue
        lines += ["", f"## {KIND_TITLES[kind]}", ""]
        rows = []
        for j in jobs:
            st = j.stats
            runs = [_runs_at(j, i) for i in range(len(report.times))]
            rows.append(
                [
                    f"`{st.job_name}`",
                    fmt.count(st.total_runs),
                    fmt.sparkline(runs),
                    fmt.share(st.share(c.FAILURE)),
                    fmt.share(st.share(c.LIMITED)),
                    fmt.count(st.resources),
                    fmt.duration(j.p95),
                    fmt.duration(st.seconds_per_resource()),
                    "; ".join(t for v, t in j.notes if v != OK) or "-",
                ]
            )
        lines += fmt.markdown_table(
            ["Job", "Runs", "Runs over time", "Failed", "Limited", "Resources", "p95",
             "Per resource", "Findings"],
            rows,
        )  # fmt: skip
    if report.unusual or report.zero_resources:
        lines += ["", "## Tenants that stand out", ""]
        rows = [
            [
                u.stats.tenant,
                f"`{u.stats.job_name}`",
                fmt.count(u.stats.resources),
                "; ".join(u.reasons),
            ]
            for u in report.unusual
        ] + [
            [
                z.tenant,
                f"`{z.job_name}`",
                "0",
                f"{fmt.count(z.state(c.SUCCESS))} runs, no resources",
            ]
            for z in report.zero_resources
        ]
        lines += fmt.markdown_table(["Tenant", "Job", "Resources", "Why"], rows)
    lines += ["", "## Alerts", ""]
    if report.alerts:
        lines += fmt.markdown_table(
            ["Alert", "Job / tenant", "Severity", "Times", "Firing in total", "First fired",
             "Last until"],
            [
                [
                    g.alertname,
                    g.subject,
                    g.severity or "-",
                    str(g.episodes),
                    fmt.duration(g.seconds),
                    _utc(g.first),
                    "still firing" if g.ongoing else _utc(g.last),
                ]
                for g in alert_groups(report.alerts)
            ],
        )  # fmt: skip
    else:
        lines.append("No JobTrack alert fired in the period.")
    return "\n".join(lines) + "\n"


CSV_COLUMNS: Final = (
    "period_start",
    "period_end",
    "scope",
    "kind",
    "job_name",
    "tenant",
    "runs",
    "successes",
    "failures",
    "limited",
    "failure_share",
    "limited_share",
    "resources",
    "resources_per_run",
    "duration_seconds_sum",
    "mean_duration_seconds",
    "p95_duration_seconds",
    "seconds_per_resource",
    "expected_interval_seconds",
    "expected_runs",
    "previous_runs",
    "previous_resources",
    "last_success",
    "finding",
)


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _csv_num(v: float | None) -> str:
    if v is None or math.isnan(v):
        return ""
    return f"{v:.6g}" if not float(v).is_integer() else str(int(v))


def render_csv(report: Report) -> str:
    """One row per job (``scope=job``) and per job and tenant (``scope=tenant``)."""
    odd = {u.stats.key: "; ".join(u.reasons) for u in report.unusual}
    zero = {z.key for z in report.zero_resources}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def row(st: Stats, scope: str, job: JobReport) -> list[str]:
        finding = "; ".join(t for v, t in job.notes if v != OK) if scope == "job" else ""
        if scope == "tenant":
            finding = odd.get(st.key, "ran, touched nothing" if st.key in zero else "")
        return [
            _iso(report.start),
            _iso(report.end),
            scope,
            st.kind,
            st.job_name,
            st.tenant,
            _csv_num(st.total_runs),
            _csv_num(st.state(c.SUCCESS)),
            _csv_num(st.state(c.FAILURE)),
            _csv_num(st.state(c.LIMITED)),
            _csv_num(st.share(c.FAILURE)),
            _csv_num(st.share(c.LIMITED)),
            _csv_num(st.resources),
            _csv_num(st.resources_per_run()),
            _csv_num(st.duration_sum),
            _csv_num(st.mean_duration()),
            _csv_num(job.p95) if scope == "job" else "",
            _csv_num(st.seconds_per_resource()),
            _csv_num(job.cadence.interval),
            _csv_num(job.expected_runs) if scope == "job" else "",
            _csv_num(st.previous_runs),
            _csv_num(st.previous_resources),
            _iso(st.last.get(c.SUCCESS)),
            finding,
        ]

    for job in report.jobs:
        writer.writerow(row(job.stats, "job", job))
        for t in job.tenants:
            writer.writerow(row(t, "tenant", job))
    return buf.getvalue()


def to_json(report: Report) -> dict[str, Any]:
    """The whole model as JSON-safe data (numbers unrounded, times in Unix seconds)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    def stats(st: Stats) -> dict[str, Any]:
        out = dataclasses.asdict(st)
        out["total_runs"] = st.total_runs
        out["seconds_per_resource"] = st.seconds_per_resource()
        out["mean_duration_seconds"] = st.mean_duration()
        return out

    data: dict[str, Any] = clean(
        {
            "prometheus": report.url,
            "start": report.start,
            "end": report.end,
            "step_seconds": report.step,
            "alert_step_seconds": report.alert_step,
            "times": report.times,
            "headline": report.headline(),
            "answers": [dataclasses.asdict(a) for a in report.answers],
            "jobs": [
                {
                    **stats(j.stats),
                    "cadence": dataclasses.asdict(j.cadence),
                    "p95_duration_seconds": j.p95,
                    "expected_runs": j.expected_runs,
                    "verdict": j.verdict,
                    "notes": [{"verdict": v, "text": t} for v, t in j.notes],
                    "steps": j.steps,
                    "tenants": [stats(t) for t in j.tenants],
                }
                for j in report.jobs
            ],
            "unusual_tenants": [
                {
                    "kind": u.stats.kind,
                    "job_name": u.stats.job_name,
                    "tenant": u.stats.tenant,
                    "resources": u.stats.resources,
                    "previous_resources": u.stats.previous_resources,
                    "median_tenant_resources": u.median,
                    "vs_median": u.vs_median,
                    "vs_previous": u.vs_previous,
                    "reasons": u.reasons,
                }
                for u in report.unusual
            ],
            "zero_resources": [
                {"kind": z.kind, "job_name": z.job_name, "tenant": z.tenant, "runs": z.total_runs}
                for z in report.zero_resources
            ],
            "alerts": [
                {
                    "alertname": a.alertname,
                    "labels": a.labels,
                    "start": a.start,
                    "end": a.end,
                    "seconds": a.seconds,
                    "ongoing": a.ongoing,
                }
                for a in report.alerts
            ],
            "warnings": report.warnings,
        }
    )
    return data


# ------------------------------------------------------------------------------ webhook


def slack_payload(report: Report) -> dict[str, Any]:
    """A short summary for a Slack incoming webhook (``text`` plus Block Kit ``blocks``);
    Mattermost and other Slack-compatible receivers read ``text``."""
    h = report.headline()
    problems = [a for a in report.answers if a.verdict != OK]
    text = (
        f"{_title(report)}: {fmt.count(h['runs'])} runs, {fmt.share(h['success_share'])} "
        f"succeeded, {fmt.count(h['failures'])} failed, {fmt.count(h['limited'])} limited, "
        f"{fmt.count(h['resources'])} resources; {h['jobs_with_problems']} of {h['jobs']} jobs "
        f"with findings; {h['alerts_fired']} alert(s) fired"
    )
    fields = [
        ("Runs", fmt.count(h["runs"])),
        ("Succeeded", fmt.share(h["success_share"])),
        ("Failed", fmt.count(h["failures"])),
        ("Limited", fmt.count(h["limited"])),
        ("Resources", fmt.count(h["resources"])),
        ("Alerts fired", str(h["alerts_fired"])),
    ]
    findings = (
        "\n".join(
            f"{':red_circle:' if a.verdict == BAD else ':warning:'} *{a.question}* {a.summary}"
            for a in problems
        )
        or ":white_check_mark: Nothing unusual: every question answered as expected."
    )
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _title(report)[:150]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": findings[:2900]}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{_utc(report.start, False)} to {_utc(report.end, False)}"
                        f" · {report.url}",
                    }
                ],
            },
        ],
    }


def post_webhook(url: str, payload: Mapping[str, Any], timeout: float = 30.0) -> None:
    """POST the payload as JSON; any non-2xx answer or connection problem is a ToolError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"--webhook must be an http:// or https:// URL, not {url!r}")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "otel-jobtrack"},
        method="POST",
    )
    shown = urllib.parse.urlunsplit(parts._replace(path="/..." if parts.path else "", query=""))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()[:200]
        raise ToolError(f"webhook {shown} answered HTTP {e.code}: {body or e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ToolError(f"cannot post to webhook {shown}: {reason}") from None


# ------------------------------------------------------------------------------ command


def write_output(report: Report, fmt_name: str, output: str, browser_path: str | None) -> str:
    """Render and write; returns where it went (``-`` for standard output)."""
    if fmt_name in BINARY_FORMATS:
        found = browser.require_browser(browser_path, f"--format {fmt_name}")
        target = Path(output)
        with tempfile.TemporaryDirectory(prefix="jobtrack-report-") as tmp:
            page = Path(tmp) / "report.html"
            page.write_text(render_html(report), encoding="utf-8")
            if fmt_name == "png":
                browser.screenshot(page, target, found)
            else:
                browser.print_pdf(page, target, found)
        return str(target)
    renderers: dict[str, Callable[[Report], str]] = {
        "html": render_html,
        "md": render_markdown,
        "csv": render_csv,
        "json": lambda r: json.dumps(to_json(r), indent=2, allow_nan=False) + "\n",
    }
    text = renderers[fmt_name](report)
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(output).write_text(text, encoding="utf-8", newline="" if fmt_name == "csv" else None)
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack report",
        description="A report of what the recurring jobs did over a period: the tracking "
        "pattern's questions answered with numbers and charts, per cron job, scheduler and "
        "tenant, plus the alerts that fired.",
        epilog="Exit status: 0 written (and posted), 2 bad arguments, 3 query, rendering or "
        "webhook error, 4 no jobtrack_* data in the period. Daily at 07:00 from cron: "
        "0 7 * * * otel-jobtrack report --prometheus URL --since 24h --format pdf "
        '--output $HOME/reports/jobs-$(date +\\%F).pdf --webhook "$JOBTRACK_WEBHOOK_URL"',
    )
    add_connection_arguments(parser)
    group = parser.add_argument_group("period and content")
    group.add_argument(
        "--since", type=duration_arg, default=86400.0, help="length of the period (default 24h)"
    )
    group.add_argument(
        "--until", type=parse_time, metavar="TIME", help="end of the period (default now)"
    )
    group.add_argument(
        "--step", type=duration_arg, help="chart resolution (default: period/48, at least 1m)"
    )
    group.add_argument("--kind", action="append", default=[], help="only these kinds")
    group.add_argument("--job", metavar="REGEX", help="only job names matching (PromQL regex)")
    group.add_argument("--tenant", metavar="REGEX", help="only tenants matching (PromQL regex)")
    group.add_argument(
        "--top", type=int, default=20, help="tenants shown per chart and table (default 20)"
    )
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=FORMATS, default="html", help="default html")
    group.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="where to write (default: standard output; jobtrack-report.png/.pdf for images)",
    )
    group.add_argument(
        "--browser",
        metavar="PATH",
        help=f"Chromium or Chrome for png/pdf (default ${browser.BROWSER_ENV} or on PATH)",
    )
    group.add_argument(
        "--webhook",
        metavar="URL",
        default=None,
        help=f"also post a Slack-compatible summary there (or set ${WEBHOOK_ENV})",
    )
    group = parser.add_argument_group("thresholds")
    group.add_argument(
        "--unusual-ratio",
        type=float,
        default=5.0,
        help="a tenant this many times its job's median tenant stands out (default 5)",
    )
    group.add_argument(
        "--change-ratio",
        type=float,
        default=3.0,
        help="a tenant this many times up or down on the previous period stands out (default 3)",
    )
    group.add_argument(
        "--min-volume",
        type=float,
        default=10.0,
        help="resources below which no volume stands out (default 10)",
    )
    return parser


def main(argv: list[str], stderr: TextIO | None = None) -> int:
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        kinds = _kinds_arg(args.kind)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if args.top < 1:
        parser.error("--top must be at least 1")
    if args.unusual_ratio <= 1 or args.change_ratio <= 1:
        parser.error("--unusual-ratio and --change-ratio must be above 1")
    output = args.output or (
        f"jobtrack-report.{args.format}" if args.format in BINARY_FORMATS else "-"
    )
    webhook = args.webhook or os.environ.get(WEBHOOK_ENV) or None
    opts = ReportOptions(
        period=args.since,
        until=args.until,
        step=args.step,
        kinds=kinds,
        job=args.job,
        tenant=args.tenant,
        selector=args.selector,
        top=args.top,
        unusual_ratio=args.unusual_ratio,
        change_ratio=args.change_ratio,
        min_volume=args.min_volume,
    )
    try:
        if args.format in BINARY_FORMATS:
            browser.require_browser(args.browser, f"--format {args.format}")
        client = client_from_args(args)
        report = collect(client, opts)
        where = write_output(report, args.format, output, args.browser)
        if where != "-":
            err.write(f"otel-jobtrack report: wrote {where}\n")
        if webhook:
            post_webhook(webhook, slack_payload(report), timeout=args.timeout)
            err.write("otel-jobtrack report: posted the summary to the webhook\n")
    except (ToolError, QueryError) as e:
        err.write(f"otel-jobtrack report: {e}\n")
        return e.exit_code
    except OSError as e:
        err.write(f"otel-jobtrack report: cannot write {output}: {e}\n")
        return 3
    return EXIT_OK
