"""``otel-jobtrack status``: one line per job (or per job and tenant) from a Prometheus API.

Each question is one PromQL query grouped by ``kind, job_name[, tenant]``, so the command
costs the same number of requests for five jobs or five thousand. It reads only the public
metric contract (the raw ``jobtrack_*`` series), not the recording rules, so it also works
where the rules are not installed; the firing ``JobTrack*`` alerts come from the server's
alert API or its ``ALERTS`` series.

How the verdicts are made (the README has the same list):

- **overdue** (exit 1): the last success is older than the declared ``expected interval +
  grace`` (grace defaults to ``--default-grace``, as in the rules). A cron or schedule job
  that declares nothing gets an *inferred* interval: ``window / usual runs per window``;
  it is overdue after ``--inferred-factor`` (3) such intervals. Resource and batch jobs run
  on demand and are only judged against a declared cadence. Checked per tenant, as the
  ``JobTrackMissedRun`` alert does; a job row is overdue when one of its tenants is.
- **failing** (exit 1): at least ``--min-runs`` (3) runs in the window and a failure share
  above ``--max-failure-share`` (10%), or, for a job with fewer runs in the window, no
  success since its last failure. Checked per tenant as well.
- warnings (no exit status unless ``--fail-on`` says so): a run in progress longer than the
  declared max runtime (stuck), a limited share above ``--max-limited-share`` (25%), runs in
  the window below ``--min-usual-share`` (50%) of the usual, a cron or scheduler that
  succeeded but touched zero resources, and firing ``JobTrack*`` alerts.
- **usual** runs per window: the median, over ``--baseline`` (7d) before the current window,
  of the run count in each window-long slice (a PromQL subquery,
  ``quantile_over_time(0.5, (sum by (...) (increase(jobtrack_runs_total[1h])))[7d:1h]
  offset 1h)``). Slices where the job did not exist are not counted.

Exit status: 0 all healthy, 1 a job overdue or failing (or a ``--fail-on`` problem),
2 bad command line, 3 the API could not be queried, 4 no ``jobtrack_*`` data matched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.rules import format_duration, parse_duration
from otel_jobtrack.tools import _format as fmt
from otel_jobtrack.tools.query import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    NoDataError,
    PromClient,
    QueryError,
    Re,
    Sample,
    ToolError,
    add_connection_arguments,
    any_of,
    client_from_args,
    label_matchers,
)

CRITICAL: Final = 2
WARNING: Final = 1
OK: Final = 0

OVERDUE: Final = "overdue"
FAILING: Final = "failing"
STUCK: Final = "stuck"
LIMITED: Final = "limited"
BELOW_USUAL: Final = "below-usual"
ZERO_RESOURCES: Final = "zero-resources"
ALERT: Final = "alert"
PROBLEM_CODES: Final = (OVERDUE, FAILING, STUCK, LIMITED, BELOW_USUAL, ZERO_RESOURCES, ALERT)
DEFAULT_FAIL_ON: Final = (OVERDUE, FAILING)

ALERT_PREFIX: Final = "JobTrack"
INFERRED_KINDS: Final = ("cron", "schedule")
"""Kinds that run on a clock of their own; workers run when scheduled, so their gaps say
nothing about health unless they declare a cadence."""
_KIND_ORDER: Final = {k: i for i, k in enumerate(c.KINDS)}

Key = tuple[str, str, str]
"""(kind, job_name, tenant); tenant is ``""`` in job rows."""


@dataclass(frozen=True)
class Options:
    """Everything that shapes the questions and the verdicts."""

    window: float = 3600.0
    baseline: float = 7 * 86400.0
    lookback: float = 2 * 86400.0
    tenants: bool = False
    kinds: tuple[str, ...] = ()
    job: str | None = None
    tenant: str | None = None
    selector: str = ""
    default_grace: float = 60.0
    inferred_factor: float = 3.0
    min_runs: float = 3.0
    max_failure_share: float = 0.1
    max_limited_share: float = 0.25
    min_usual_share: float = 0.5
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    alerts: str = "auto"


@dataclass(frozen=True)
class Problem:
    code: str
    severity: int
    score: float
    """How bad, to rank rows of the same severity (e.g. age / allowed age)."""
    text: str


@dataclass
class Cadence:
    interval: float | None = None
    grace: float | None = None
    max_runtime: float | None = None


@dataclass
class Unit:
    """Additive numbers of one (kind, job, tenant), or their sum over a job's tenants."""

    kind: str
    job_name: str
    tenant: str
    runs: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    resources: float | None = None
    duration_sum: float | None = None
    in_progress: float = 0.0
    oldest_start: float | None = None
    tenants: int = 1

    @property
    def key(self) -> Key:
        return (self.kind, self.job_name, self.tenant)

    @property
    def total_runs(self) -> float:
        return sum(self.runs.values())

    def state_runs(self, state: str) -> float:
        return self.runs.get(state, 0.0)

    @property
    def last_success(self) -> float | None:
        return self.last.get(c.SUCCESS)

    def add(self, other: Unit) -> None:
        for state, n in other.runs.items():
            self.runs[state] = self.runs.get(state, 0.0) + n
        for state, t in other.last.items():
            self.last[state] = max(self.last.get(state, t), t)
        self.resources = _sum_opt(self.resources, other.resources)
        self.duration_sum = _sum_opt(self.duration_sum, other.duration_sum)
        self.in_progress += other.in_progress
        if other.oldest_start is not None:
            self.oldest_start = min(self.oldest_start or other.oldest_start, other.oldest_start)


@dataclass
class Row:
    """One output line with its numbers and verdicts."""

    unit: Unit
    cadence: Cadence
    usual_runs: float | None = None
    p95: float | None = None
    alerts: list[dict[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    inferred_interval: float | None = None
    allowed_age: float | None = None

    @property
    def severity(self) -> int:
        return max((p.severity for p in self.problems), default=OK)

    @property
    def status(self) -> str:
        codes = {p.code for p in self.problems if p.severity == CRITICAL}
        if OVERDUE in codes:
            return "OVERDUE"
        if FAILING in codes:
            return "FAILING"
        if self.severity >= CRITICAL:
            return "CRITICAL"
        if self.severity == WARNING:
            return "WARN"
        return "OK"

    def failure_share(self) -> float | None:
        runs = self.unit.total_runs
        return self.unit.state_runs(c.FAILURE) / runs if runs > 0 else None

    def limited_share(self) -> float | None:
        runs = self.unit.total_runs
        return self.unit.state_runs(c.LIMITED) / runs if runs > 0 else None

    def seconds_per_resource(self) -> float | None:
        r, d = self.unit.resources, self.unit.duration_sum
        if r is None or d is None or r <= 0:
            return None
        return d / r

    def mean_duration(self) -> float | None:
        runs, d = self.unit.total_runs, self.unit.duration_sum
        return d / runs if d is not None and runs > 0 else None


@dataclass
class Status:
    """What ``status`` found: rows ranked worst first, plus alerts tied to no job."""

    url: str
    at: float
    options: Options
    rows: list[Row]
    other_alerts: list[dict[str, str]]
    alert_source: str
    warnings: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        fail_on = set(self.options.fail_on)
        for row in self.rows:
            if any(p.code in fail_on for p in row.problems):
                return EXIT_PROBLEM
        if ALERT in fail_on and self.other_alerts:
            return EXIT_PROBLEM
        return EXIT_OK


def _sum_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _value(sample: Sample) -> float | None:
    return None if math.isnan(sample.value) else sample.value


# ------------------------------------------------------------------------------ queries


def prom_duration(seconds: float) -> str:
    """Seconds as a PromQL duration (whole seconds, or milliseconds below one second)."""
    if seconds < 1 or not float(seconds).is_integer():
        return f"{round(seconds * 1000)}ms"
    return format_duration(seconds)


def queries(opts: Options) -> dict[str, str]:
    """The PromQL for every question, one query each (also shown by ``--show-queries``)."""
    kinds = any_of(opts.kinds)
    job = Re(opts.job) if opts.job else None
    tenant = Re(opts.tenant) if opts.tenant else None
    every = label_matchers(opts.selector, kind=kinds, job_name=job, tenant=tenant)
    by_job = label_matchers(opts.selector, kind=kinds, job_name=job)
    w, lb, base = (
        prom_duration(opts.window),
        prom_duration(opts.lookback),
        prom_duration(opts.baseline),
    )
    unit = "kind, job_name, tenant"
    shown = unit if opts.tenants else "kind, job_name"

    def setting(metric: str, name: str) -> str:
        return f'label_replace(last_over_time({metric}{by_job}[{lb}]), "setting", "{name}", "", "")'

    return {
        "last_run": (
            f"max by ({unit}, state) (last_over_time({c.LAST_RUN_TIMESTAMP}{every}[{lb}]))"
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
        "runs": f"sum by ({unit}, state) (increase({c.RUNS_TOTAL}{every}[{w}]))",
        "usual_runs": (
            f"quantile_over_time(0.5, (sum by ({shown}) (increase({c.RUNS_TOTAL}{every}[{w}])))"
            f"[{base}:{w}] offset {w})"
        ),
        "resources": f"sum by ({unit}) (increase({c.RESOURCES_TOTAL}{every}[{w}]))",
        "duration_sum": f"sum by ({unit}) (increase({c.RUN_DURATION}_sum{every}[{w}]))",
        "p95": (
            f"histogram_quantile(0.95, sum by ({shown}, le) "
            f"(rate({c.RUN_DURATION}_bucket{every}[{w}])))"
        ),
        "in_progress": (
            f'label_replace(sum by ({unit}) ({c.RUNS_IN_PROGRESS}{every}), "q", "count", "", "")'
            f"\nor label_replace(min by ({unit}) ({c.OLDEST_RUN_START}{every} "
            f'and {c.RUNS_IN_PROGRESS}{every} > 0), "q", "oldest", "", "")'
        ),
    }


ALERTS_QUERY: Final = f'ALERTS{{alertstate="firing", alertname=~"{ALERT_PREFIX}.*"}}'


def fetch(
    client: PromClient, opts: Options, at: float | None
) -> tuple[dict[str, list[Sample]], list[dict[str, str]], str]:
    """Ask every question (a few requests at a time); returns answers, firing alerts and
    where the alerts came from (``api``, ``series`` or ``none``)."""
    texts = queries(opts)
    calls: dict[str, Callable[[], Any]] = {
        name: functools.partial(client.query, q, at) for name, q in texts.items()
    }
    source = opts.alerts
    if source == "auto":
        source = "series" if at is not None else "api"
    if source == "api":
        calls["alerts"] = functools.partial(_alerts_from_api, client, at)
    elif source == "series":
        calls["alerts"] = lambda: ("series", _alerts_from_series(client, at))
    answers = client.run_all(calls)
    alert_source, alerts = answers.pop("alerts", ("none", []))
    return answers, alerts, alert_source


def _alerts_from_api(client: PromClient, at: float | None) -> tuple[str, list[dict[str, str]]]:
    try:
        active = client.alerts()
    except QueryError as e:
        if e.status not in (404, 405, 501):
            raise
        # No alerting API (e.g. VictoriaMetrics without vmalert proxy): use ALERTS.
        return "series", _alerts_from_series(client, at)
    out = []
    for alert in active:
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        if alert.get("state") != "firing":
            continue
        if not labels.get("alertname", "").startswith(ALERT_PREFIX):
            continue
        if alert.get("activeAt"):
            labels["__active_at__"] = str(alert["activeAt"])
        out.append(labels)
    return "api", out


def _alerts_from_series(client: PromClient, at: float | None) -> list[dict[str, str]]:
    return [dict(s.labels) for s in client.query(ALERTS_QUERY, at)]


# ------------------------------------------------------------------------------ evaluation


def _units(answers: Mapping[str, list[Sample]]) -> dict[Key, Unit]:
    units: dict[Key, Unit] = {}

    def unit(labels: Mapping[str, str]) -> Unit:
        key = (labels.get("kind", ""), labels.get("job_name", ""), labels.get("tenant", ""))
        if key not in units:
            units[key] = Unit(*key)
        return units[key]

    for s in answers["runs"]:
        v = _value(s)
        if v is not None:
            u = unit(s.labels)
            u.runs[s.labels.get("state", "")] = u.runs.get(s.labels.get("state", ""), 0.0) + v
    for s in answers["last_run"]:
        v = _value(s)
        if v is not None and v > 0:
            unit(s.labels).last[s.labels.get("state", "")] = v
    for s in answers["resources"]:
        unit(s.labels).resources = _value(s)
    for s in answers["duration_sum"]:
        unit(s.labels).duration_sum = _value(s)
    for s in answers["in_progress"]:
        v = _value(s)
        if v is None:
            continue
        if s.labels.get("q") == "count":
            unit(s.labels).in_progress = v
        else:
            unit(s.labels).oldest_start = v
    return units


def _cadences(samples: Iterable[Sample]) -> dict[tuple[str, str], Cadence]:
    out: dict[tuple[str, str], Cadence] = {}
    for s in samples:
        key = (s.labels.get("kind", ""), s.labels.get("job_name", ""))
        cad = out.setdefault(key, Cadence())
        v = _value(s)
        name = s.labels.get("setting")
        if name == "interval" and v is not None and v > 0:
            cad.interval = v
        elif name == "grace":
            cad.grace = v
        elif name == "max_runtime" and v is not None and v > 0:
            cad.max_runtime = v
    return out


def _unit_problems(unit: Unit, cad: Cadence, opts: Options, now: float) -> list[Problem]:
    """Verdicts that hold per tenant: declared-cadence overdue, failing, stuck, zero."""
    out = []
    last_ok = unit.last_success
    if cad.interval is not None and last_ok is not None:
        allowed = cad.interval + (cad.grace if cad.grace is not None else opts.default_grace)
        age = now - last_ok
        if age > allowed:
            out.append(
                Problem(
                    OVERDUE,
                    CRITICAL,
                    age / allowed,
                    f"last success {fmt.duration(age)} ago > "
                    f"{fmt.duration(cad.interval)}+{fmt.duration(allowed - cad.interval)}",
                )
            )
    runs = unit.total_runs
    failures = unit.state_runs(c.FAILURE)
    if runs >= opts.min_runs and failures > 0 and failures / runs > opts.max_failure_share:
        share = failures / runs
        out.append(Problem(FAILING, CRITICAL, 1 + share, f"{fmt.share(share)} failed"))
    elif runs < opts.min_runs:
        last_fail = unit.last.get(c.FAILURE)
        if last_fail is not None and (last_ok is None or last_fail > last_ok):
            since = (
                f"since {fmt.duration(now - last_fail)} ago"
                if last_ok is None
                else f"{fmt.duration(now - last_fail)} ago, no success since"
            )
            out.append(Problem(FAILING, CRITICAL, 1.0, f"last run failed {since}"))
    if cad.max_runtime is not None and unit.in_progress > 0 and unit.oldest_start is not None:
        running = now - unit.oldest_start
        if running > cad.max_runtime:
            out.append(
                Problem(
                    STUCK,
                    WARNING,
                    running / cad.max_runtime,
                    f"run in progress {fmt.duration(running)} > "
                    f"max {fmt.duration(cad.max_runtime)}",
                )
            )
    if (
        unit.kind in INFERRED_KINDS
        and unit.state_runs(c.SUCCESS) >= 1
        and unit.resources is not None
        and unit.resources == 0
    ):
        out.append(
            Problem(
                ZERO_RESOURCES,
                WARNING,
                1.0,
                f"{fmt.count(unit.state_runs(c.SUCCESS))} runs, 0 resources",
            )
        )
    return out


def _row_problems(row: Row, opts: Options, now: float) -> list[Problem]:
    """Verdicts that hold for what the row shows: inferred cadence, usual, limited, alerts."""
    out = []
    unit, cad = row.unit, row.cadence
    # A job row of several tenants runs as often as all its tenants together: its gaps say
    # nothing about one tenant, so an interval is only inferred for one series.
    one_series = opts.tenants or unit.tenants <= 1
    if cad.interval is None and unit.kind in INFERRED_KINDS and one_series:
        if row.usual_runs is not None and row.usual_runs >= 1:
            row.inferred_interval = opts.window / row.usual_runs
            row.allowed_age = opts.inferred_factor * row.inferred_interval + opts.default_grace
            last_ok = unit.last_success
            if last_ok is not None and now - last_ok > row.allowed_age:
                age = now - last_ok
                out.append(
                    Problem(
                        OVERDUE,
                        CRITICAL,
                        age / row.allowed_age,
                        f"last success {fmt.duration(age)} ago > {opts.inferred_factor:g} x "
                        f"usual interval ~{fmt.duration(row.inferred_interval)} + "
                        f"{fmt.duration(opts.default_grace)} (inferred)",
                    )
                )
    elif cad.interval is not None:
        grace = cad.grace if cad.grace is not None else opts.default_grace
        row.allowed_age = cad.interval + grace
    runs = unit.total_runs
    limited = row.limited_share()
    if runs >= opts.min_runs and limited is not None and limited > opts.max_limited_share:
        out.append(Problem(LIMITED, WARNING, limited, f"{fmt.share(limited)} of runs limited"))
    usual = row.usual_runs
    if usual is not None and usual >= opts.min_runs and runs < opts.min_usual_share * usual:
        out.append(
            Problem(
                BELOW_USUAL,
                WARNING,
                1 - runs / usual,
                f"{fmt.count(runs)} runs in {fmt.duration(opts.window)}, "
                f"usually {fmt.count(usual)}",
            )
        )
    if row.alerts:
        names = sorted({a.get("alertname", "?") for a in row.alerts})
        critical = any(a.get("severity") == "critical" for a in row.alerts)
        short = [n.removeprefix(ALERT_PREFIX) for n in names]  # all are JobTrack*
        out.append(Problem(ALERT, CRITICAL if critical else WARNING, 0.5, ", ".join(short)))
    return out


def _merge_tenant_problems(per_tenant: Mapping[str, list[Problem]]) -> list[Problem]:
    """A job row's share of its tenants' verdicts: one problem per code, naming tenants."""
    by_code: dict[str, list[tuple[str, Problem]]] = {}
    for tenant, problems in per_tenant.items():
        for p in problems:
            by_code.setdefault(p.code, []).append((tenant, p))
    out = []
    for code, found in by_code.items():
        found.sort(key=lambda tp: -tp[1].score)
        if len(per_tenant) == 1:
            out.append(found[0][1])
            continue
        named = "; ".join(f"{t} {p.text}" for t, p in found[:3])
        more = f"; +{len(found) - 3} more" if len(found) > 3 else ""
        worst = found[0][1]
        text = (
            named
            if len(found) == 1
            else f"{len(found)} of {len(per_tenant)} tenants: {named}{more}"
        )
        out.append(Problem(code, worst.severity, worst.score, text))
    return out


def rank_key(row: Row) -> tuple[int, float, int, str, str]:
    """Worst first: severity, then how bad, then kind order (cron first), job, tenant."""
    score = max((p.score for p in row.problems if p.severity == row.severity), default=0.0)
    return (
        -row.severity,
        -score,
        _KIND_ORDER.get(row.unit.kind, len(_KIND_ORDER)),
        row.unit.job_name,
        row.unit.tenant,
    )


def _matches(alert: Mapping[str, str], key: Key, tenants: bool) -> bool:
    kind, job, tenant = key
    if alert.get("kind") != kind or alert.get("job_name") != job:
        return False
    return not tenants or alert.get("tenant") in (None, "", tenant)


def evaluate(
    answers: Mapping[str, list[Sample]],
    alerts: Sequence[dict[str, str]],
    opts: Options,
    now: float,
) -> tuple[list[Row], list[dict[str, str]]]:
    """Rows ranked worst first, and the firing alerts tied to no job (e.g. exporter down)."""
    units = _units(answers)
    cadences = _cadences(answers["cadence"])
    if opts.tenant:
        # The cadence gauges carry no tenant: keep those of jobs the tenant filter left.
        known = {(k, j) for k, j, _ in units}
        cadences = {k: v for k, v in cadences.items() if k in known}
    for kind, job in cadences:
        if not any(k == kind and j == job for k, j, _ in units):
            units[(kind, job, "")] = Unit(kind, job, "")
    tenant_problems = {
        key: _unit_problems(u, cadences.get(key[:2], Cadence()), opts, now)
        for key, u in units.items()
    }
    shown: dict[Key, Row] = {}
    if opts.tenants:
        for key, u in units.items():
            shown[key] = Row(u, cadences.get(key[:2], Cadence()))
            shown[key].problems = list(tenant_problems[key])
    else:
        members: dict[Key, dict[str, list[Problem]]] = {}
        for key, u in units.items():
            job_key = (key[0], key[1], "")
            if job_key not in shown:
                total = Unit(key[0], key[1], "", tenants=0)
                shown[job_key] = Row(total, cadences.get(key[:2], Cadence()))
            if key[2]:
                shown[job_key].unit.add(u)
                shown[job_key].unit.tenants += 1
            members.setdefault(job_key, {})[key[2] or "-"] = tenant_problems[key]
        for job_key, row in shown.items():
            row.problems = _merge_tenant_problems(members[job_key])
    for s in answers["usual_runs"]:
        key = _shown_key(s.labels, opts.tenants)
        if key in shown:
            shown[key].usual_runs = _value(s)
    for s in answers["p95"]:
        key = _shown_key(s.labels, opts.tenants)
        if key in shown:
            shown[key].p95 = _value(s)
    other: list[dict[str, str]] = []
    for alert in alerts:
        hits = [row for key, row in shown.items() if _matches(alert, key, opts.tenants)]
        for row in hits:
            row.alerts.append(alert)
        if not hits and "job_name" not in alert and not (opts.kinds or opts.job or opts.tenant):
            other.append(alert)
    for row in shown.values():
        row.problems.extend(_row_problems(row, opts, now))
        row.problems.sort(key=lambda p: (-p.severity, PROBLEM_CODES.index(p.code)))
    rows = sorted(shown.values(), key=rank_key)
    return rows, other


def _shown_key(labels: Mapping[str, str], tenants: bool) -> Key:
    return (
        labels.get("kind", ""),
        labels.get("job_name", ""),
        labels.get("tenant", "") if tenants else "",
    )


def collect(client: PromClient, opts: Options, at: float | None = None) -> Status:
    """Query the API and evaluate: the whole ``status`` command without the printing."""
    now = time.time() if at is None else at
    answers, alerts, source = fetch(client, opts, at)
    if not any(answers[q] for q in ("runs", "last_run", "cadence")):
        filters = [
            f"{name} {value}"
            for name, value in (
                ("--kind", ",".join(opts.kinds)),
                ("--job", opts.job),
                ("--tenant", opts.tenant),
                ("--selector", opts.selector),
            )
            if value
        ]
        where = f" matching {', '.join(filters)}" if filters else ""
        hint = (
            "check the filters (without the filters, status lists every job)"
            if filters
            else "is it scraping an otel-jobtrack /metrics endpoint?"
        )
        raise NoDataError(
            f"no jobtrack_* series{where} at {client.url} in the {fmt.duration(opts.lookback)} "
            f"before {_utc(now)}: {hint}"
        )
    rows, other = evaluate(answers, alerts, opts, now)
    return Status(client.url, now, opts, rows, other, source, list(client.warnings))


# ------------------------------------------------------------------------------ output


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_STATUS_STYLE: Final = {
    "OVERDUE": "bold red",
    "FAILING": "bold red",
    "CRITICAL": "bold red",
    "WARN": "bold yellow",
    "OK": "green",
}


def _every(row: Row) -> str:
    cad = row.cadence
    if cad.interval is not None:
        grace = cad.grace if cad.grace is not None else None
        return fmt.duration(cad.interval) + (f"+{fmt.duration(grace)}" if grace else "")
    if row.inferred_interval is not None:
        return "~" + fmt.duration(row.inferred_interval)
    return fmt.DASH


def render_text(status: Status, color: bool) -> str:
    """The terminal table: a header, one line per row, a summary and job-less alerts."""
    opts = status.options
    win = fmt.duration(opts.window)

    def dim(text: str) -> str:
        return fmt.paint(text, "dim", color) if text == fmt.DASH else text

    headers = ["STATUS", "KIND", "JOB"]
    if opts.tenants:
        headers.append("TENANT")
    headers += [
        "LAST SUCCESS",
        "EVERY",
        f"RUNS {win}",
        "USUAL",
        "FAILED",
        "LIMITED",
        "RESOURCES",
        "P95",
        "S/RES",
        "RUNNING",
        "NOTES",
    ]
    right = [False, False, False] + ([False] if opts.tenants else [])
    right += [True, True, True, True, True, True, True, True, True, True, False]
    lines_rows = []
    for row in status.rows:
        u = row.unit
        age = None if u.last_success is None else status.at - u.last_success
        last = f"{fmt.duration(age)} ago" if age is not None else "never"
        if u.last_success is None and not u.runs:
            last = fmt.DASH
        running = fmt.DASH
        if u.in_progress > 0:
            running = fmt.count(u.in_progress)
            if u.oldest_start is not None:
                running += f" ({fmt.duration(status.at - u.oldest_start)})"
        notes = "; ".join(f"{p.code}: {p.text}" for p in row.problems)
        notes_style = (
            "red" if row.severity == CRITICAL else "yellow" if row.severity == WARNING else None
        )
        cells = [
            fmt.paint(row.status, _STATUS_STYLE[row.status], color),
            u.kind,
            fmt.paint(u.job_name, "bold", color) if row.severity else u.job_name,
        ]
        if opts.tenants:
            cells.append(u.tenant or fmt.DASH)
        cells += [
            last,
            _every(row),
            fmt.count(u.total_runs),
            fmt.count(row.usual_runs),
            fmt.share(row.failure_share()),
            fmt.share(row.limited_share()),
            fmt.count(u.resources),
            fmt.duration(row.p95),
            fmt.duration(row.seconds_per_resource()),
            running,
            fmt.paint(notes, notes_style, color),
        ]
        lines_rows.append([dim(cell) for cell in cells])
    out = [
        fmt.paint("otel-jobtrack status", "bold", color)
        + f"  {status.url}  at {_utc(status.at)}  window {win}, usual = median over "
        f"{fmt.duration(opts.baseline)}",
        "",
    ]
    out += fmt.table(headers, lines_rows, right)
    counts = {code: 0 for code in (OVERDUE, FAILING)}
    warn = 0
    for row in status.rows:
        codes = {p.code for p in row.problems}
        for code in counts:
            counts[code] += code in codes
        warn += row.severity == WARNING
    what = "tenant rows" if opts.tenants else "jobs"
    summary = (
        f"{len(status.rows)} {what}: {counts[OVERDUE]} overdue, {counts[FAILING]} failing, "
        f"{warn} with warnings"
    )
    style = "bold red" if counts[OVERDUE] or counts[FAILING] else "yellow" if warn else "green"
    out += ["", fmt.paint(summary, style, color)]
    if status.other_alerts:
        names = ", ".join(
            f"{a.get('alertname', '?')}"
            + (f" ({a['instance']})" if a.get("instance") else "")
            + (f" [{a['where']}]" if a.get("where") else "")
            for a in status.other_alerts
        )
        out.append(fmt.paint(f"other firing alerts: {names}", "yellow", color))
    for warning in status.warnings:
        out.append(fmt.paint(f"warning from the server: {warning}", "yellow", color))
    return "\n".join(out) + "\n"


def _num(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else v


def to_json(status: Status) -> dict[str, Any]:
    """Everything ``--json`` prints: the numbers unrounded, times as Unix seconds."""
    rows = []
    for row in status.rows:
        u = row.unit
        item: dict[str, Any] = {
            "status": row.status.lower(),
            "kind": u.kind,
            "job_name": u.job_name,
        }
        if status.options.tenants:
            item["tenant"] = u.tenant
        else:
            item["tenants"] = u.tenants
        item.update(
            {
                "last_success": u.last_success,
                "last_success_age_seconds": (
                    None if u.last_success is None else status.at - u.last_success
                ),
                "last_failure": u.last.get(c.FAILURE),
                "last_limited": u.last.get(c.LIMITED),
                "expected_interval_seconds": row.cadence.interval,
                "grace_seconds": row.cadence.grace,
                "max_runtime_seconds": row.cadence.max_runtime,
                "inferred_interval_seconds": row.inferred_interval,
                "allowed_age_seconds": row.allowed_age,
                "runs": u.total_runs,
                "successes": u.state_runs(c.SUCCESS),
                "failures": u.state_runs(c.FAILURE),
                "limited": u.state_runs(c.LIMITED),
                "usual_runs": _num(row.usual_runs),
                "failure_share": row.failure_share(),
                "limited_share": row.limited_share(),
                "resources": _num(u.resources),
                "duration_seconds_sum": _num(u.duration_sum),
                "mean_duration_seconds": row.mean_duration(),
                "p95_duration_seconds": _num(row.p95),
                "seconds_per_resource": row.seconds_per_resource(),
                "runs_in_progress": u.in_progress,
                "oldest_run_age_seconds": (
                    None if u.oldest_start is None else status.at - u.oldest_start
                ),
                "alerts": [a.get("alertname") for a in row.alerts],
                "problems": [
                    {"code": p.code, "severity": _SEVERITY_NAMES[p.severity], "text": p.text}
                    for p in row.problems
                ],
            }
        )
        rows.append(item)
    opts = status.options
    return {
        "prometheus": status.url,
        "time": status.at,
        "window_seconds": opts.window,
        "baseline_seconds": opts.baseline,
        "lookback_seconds": opts.lookback,
        "alert_source": status.alert_source,
        "rows": rows,
        "other_alerts": [
            {k: v for k, v in a.items() if not k.startswith("__")} for a in status.other_alerts
        ],
        "summary": {
            "rows": len(rows),
            "overdue": sum(any(p.code == OVERDUE for p in r.problems) for r in status.rows),
            "failing": sum(any(p.code == FAILING for p in r.problems) for r in status.rows),
            "warnings": sum(r.severity == WARNING for r in status.rows),
        },
        "warnings": status.warnings,
        "exit_code": status.exit_code(),
    }


_SEVERITY_NAMES: Final = {CRITICAL: "critical", WARNING: "warning", OK: "ok"}


# ------------------------------------------------------------------------------ command


def parse_time(text: str) -> float:
    """Unix seconds or an ISO 8601 / RFC 3339 time (``2024-05-01T06:00:00Z``)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (Unix seconds or e.g. 2024-05-01T06:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def duration_arg(text: str) -> float:
    """A Prometheus duration (``90s``, ``1h``, ``7d``) as seconds; must be positive."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return seconds


def share_arg(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 0.1 or 10%)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1: {text!r}")
    return value


def _kinds_arg(values: Sequence[str]) -> tuple[str, ...]:
    kinds: list[str] = []
    for value in values:
        for kind in value.split(","):
            kind = kind.strip()
            if kind not in c.KINDS:
                raise argparse.ArgumentTypeError(
                    f"unknown kind {kind!r}; expected one of {', '.join(c.KINDS)}"
                )
            kinds.append(kind)
    return tuple(dict.fromkeys(kinds))


def _fail_on_arg(value: str) -> tuple[str, ...]:
    if value in ("", "none"):
        return ()
    if value == "any":
        return PROBLEM_CODES
    codes = tuple(v.strip() for v in value.split(","))
    for code in codes:
        if code not in PROBLEM_CODES:
            raise argparse.ArgumentTypeError(
                f"unknown problem {code!r}; expected any, none or of {', '.join(PROBLEM_CODES)}"
            )
    return codes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack status",
        description="One line per job from a Prometheus-compatible API: last success against "
        "the declared or usual interval, runs against the usual, failures, resources, "
        "duration, runs in progress and firing JobTrack alerts. Problems first.",
        epilog="Exit status: 0 healthy, 1 a job is overdue or failing (see --fail-on), "
        "2 bad arguments, 3 the API could not be queried, 4 no jobtrack_* data matched.",
    )
    add_connection_arguments(parser)
    group = parser.add_argument_group("what to show")
    group.add_argument("--tenants", action="store_true", help="one row per job and tenant")
    group.add_argument(
        "--kind",
        action="append",
        default=[],
        help=f"only these kinds ({', '.join(c.KINDS)}; repeat or comma-separate)",
    )
    group.add_argument("--job", metavar="REGEX", help="only job names matching (PromQL regex)")
    group.add_argument("--tenant", metavar="REGEX", help="only tenants matching (PromQL regex)")
    group.add_argument("--json", action="store_true", help="print JSON for scripts")
    group.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour problems (auto: on a terminal unless NO_COLOR is set)",
    )
    group.add_argument(
        "--at", type=parse_time, metavar="TIME", help="evaluate at TIME instead of now"
    )
    group.add_argument(
        "--show-queries", action="store_true", help="print the PromQL used, then exit"
    )
    group = parser.add_argument_group("verdicts")
    group.add_argument(
        "--window", type=duration_arg, default=3600.0, help="recent window (default 1h)"
    )
    group.add_argument(
        "--baseline",
        type=duration_arg,
        default=7 * 86400.0,
        help="history for the usual runs per window (default 7d)",
    )
    group.add_argument(
        "--lookback",
        type=duration_arg,
        default=2 * 86400.0,
        help="how far back a last success or declared cadence is found (default 2d)",
    )
    group.add_argument(
        "--default-grace",
        type=duration_arg,
        default=60.0,
        help="grace for a declared interval without grace= (default 60s, as the rules)",
    )
    group.add_argument(
        "--inferred-factor",
        type=float,
        default=3.0,
        help="overdue after this many usual intervals, for jobs declaring none (default 3)",
    )
    group.add_argument(
        "--min-runs",
        type=float,
        default=3.0,
        help="runs in the window before shares count (default 3)",
    )
    group.add_argument(
        "--max-failure-share", type=share_arg, default=0.1, help="failing above (default 10%%)"
    )
    group.add_argument(
        "--max-limited-share", type=share_arg, default=0.25, help="warn above (default 25%%)"
    )
    group.add_argument(
        "--min-usual-share",
        type=share_arg,
        default=0.5,
        help="warn when runs fall below this share of the usual (default 50%%)",
    )
    group.add_argument(
        "--fail-on",
        type=_fail_on_arg,
        default=DEFAULT_FAIL_ON,
        metavar="PROBLEMS",
        help=f"problems that make the exit status 1: comma-separated of "
        f"{', '.join(PROBLEM_CODES)}, or any, or none (default overdue,failing)",
    )
    group.add_argument(
        "--alerts",
        choices=("auto", "api", "series", "none"),
        default="auto",
        help="where firing alerts come from: the /api/v1/alerts endpoint, the ALERTS series "
        "(auto: the API, falling back to ALERTS; ALERTS with --at)",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        window=args.window,
        baseline=args.baseline,
        lookback=args.lookback,
        tenants=args.tenants,
        kinds=_kinds_arg(args.kind),
        job=args.job,
        tenant=args.tenant,
        selector=args.selector,
        default_grace=args.default_grace,
        inferred_factor=args.inferred_factor,
        min_runs=args.min_runs,
        max_failure_share=args.max_failure_share,
        max_limited_share=args.max_limited_share,
        min_usual_share=args.min_usual_share,
        fail_on=args.fail_on,
        alerts=args.alerts,
    )


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        opts = options_from_args(args)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
        return EXIT_USAGE
    if args.baseline < args.window:
        parser.error("--baseline must be at least as long as --window")
    if args.show_queries:
        for name, text in queries(opts).items():
            out.write(f"# {name}\n{text}\n\n")
        out.write(f"# alerts (when not from /api/v1/alerts)\n{ALERTS_QUERY}\n")
        return EXIT_OK
    try:
        client = client_from_args(args)
        status = collect(client, opts, args.at)
    except ToolError as e:
        err.write(f"otel-jobtrack status: {e}\n")
        return e.exit_code
    if args.json:
        json.dump(to_json(status), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        out.write(render_text(status, fmt.color_enabled(out, args.color)))
    return status.exit_code()
