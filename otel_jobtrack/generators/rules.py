"""Prometheus recording and alert rules for otel-jobtrack, generated from one settings object.

``otel-jobtrack rules`` writes ``alerts/jobtrack-rules.yaml`` (plain Prometheus rule file),
``alerts/kubernetes/prometheus-rule.yaml`` (prometheus-operator ``PrometheusRule``) and
``alerts/README.md``. The checked-in files are the output for :class:`RulesConfig` defaults;
users regenerate with their own selector, thresholds, windows and severities (flags, ``--set``
or a YAML ``--config`` file). ``docs/runbook.md`` explains every alert and the math.

Three kinds of rules:

- breakdowns: per kind, per job and per tenant rates of runs, resources and duration (the
  original system's ``total``/``jobs``/``tenants`` views), cheap for dashboards;
- window recordings: per job and tenant counts over the alert window, last success, declared
  cadence and rolling baselines, shared by several alerts;
- alerts: missed and stuck runs from the cadence declared in code (one generic rule for every
  job), failure and zero-resource checks, robust outlier tests for invocation counts and tenant
  volumes (a Hampel-style band: rolling median plus or minus ``k`` robust standard deviations,
  estimated from the inter-quartile range), and now-versus-before comparisons for duration
  drift and limited runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators import _files as generate
from otel_jobtrack.generators import shipped

PREFIX: Final = "JobTrack"

MISSED_RUN: Final = "JobTrackMissedRun"
RUN_STUCK: Final = "JobTrackRunStuck"
EXPORTER_DOWN: Final = "JobTrackExporterDown"
RUN_FAILURES: Final = "JobTrackRunFailures"
RUNS_LIMITED: Final = "JobTrackRunsLimited"
RESOURCES_ZERO: Final = "JobTrackResourcesZero"
RUNS_BELOW_EXPECTED: Final = "JobTrackRunsBelowExpected"
RESOURCE_VOLUME_HIGH: Final = "JobTrackResourceVolumeHigh"
RESOURCE_VOLUME_LOW: Final = "JobTrackResourceVolumeLow"
DURATION_DRIFT: Final = "JobTrackDurationDrift"
INSTRUMENTATION_ERRORS: Final = "JobTrackInstrumentationErrors"
EXPORT_ERRORS: Final = "JobTrackExportErrors"

ALERT_NAMES: Final = (
    MISSED_RUN,
    RUN_STUCK,
    EXPORTER_DOWN,
    RUN_FAILURES,
    RUNS_LIMITED,
    RESOURCES_ZERO,
    RUNS_BELOW_EXPECTED,
    RESOURCE_VOLUME_HIGH,
    RESOURCE_VOLUME_LOW,
    DURATION_DRIFT,
    INSTRUMENTATION_ERRORS,
    EXPORT_ERRORS,
)

CRON_DASHBOARD_UID: Final = "jobtrack-cron"
SCHEDULE_DASHBOARD_UID: Final = "jobtrack-schedule"

# Recording-rule names under the default settings (``level:metric:operations``). Dashboards
# reference these; a test checks they match what the default settings generate.
RUNS_RATE_BY_KIND: Final = "kind_state:jobtrack_runs:rate5m"
RUNS_RATE_BY_JOB: Final = "kind_job_name_state:jobtrack_runs:rate5m"
RUNS_RATE_BY_TENANT: Final = "kind_tenant_state:jobtrack_runs:rate5m"
RESOURCES_RATE_BY_KIND: Final = "kind:jobtrack_resources:rate5m"
RESOURCES_RATE_BY_JOB: Final = "kind_job_name:jobtrack_resources:rate5m"
RESOURCES_RATE_BY_TENANT: Final = "kind_tenant:jobtrack_resources:rate5m"
DURATION_SUM_RATE_BY_KIND: Final = "kind_state:jobtrack_run_duration_seconds_sum:rate5m"
DURATION_SUM_RATE_BY_JOB: Final = "kind_job_name_state:jobtrack_run_duration_seconds_sum:rate5m"
DURATION_SUM_RATE_BY_TENANT: Final = "kind_tenant_state:jobtrack_run_duration_seconds_sum:rate5m"
DURATION_BUCKET_RATE_BY_KIND: Final = "kind_le:jobtrack_run_duration_seconds_bucket:rate5m"
DURATION_BUCKET_RATE_BY_JOB: Final = "kind_job_name_le:jobtrack_run_duration_seconds_bucket:rate5m"
DURATION_BUCKET_RATE_BY_TENANT: Final = "kind_tenant_le:jobtrack_run_duration_seconds_bucket:rate5m"
RUNS_BY_STATE_IN_WINDOW: Final = "kind_job_name_tenant_state:jobtrack_runs:increase1h"
RUNS_IN_WINDOW: Final = "kind_job_name_tenant:jobtrack_runs:increase1h"
RESOURCES_IN_WINDOW: Final = "kind_job_name_tenant:jobtrack_resources:increase1h"
DURATION_P95_IN_WINDOW: Final = "kind_job_name:jobtrack_run_duration_seconds:p95_1h"
LAST_SUCCESS: Final = "kind_job_name_tenant:jobtrack_last_success_timestamp_seconds:max"
EXPECTED_INTERVAL: Final = "kind_job_name:jobtrack_job_expected_interval_seconds:max"
GRACE: Final = "kind_job_name:jobtrack_job_grace_seconds:max"
MAX_RUNTIME: Final = "kind_job_name:jobtrack_job_max_runtime_seconds:max"
OLDEST_RUN_START: Final = "kind_job_name_tenant:jobtrack_oldest_run_start_timestamp_seconds:min"
JOBS_PER_TARGET: Final = "job_instance:jobtrack_jobs:count"
RUNS_IN_WINDOW_MEDIAN: Final = "kind_job_name_tenant:jobtrack_runs:increase1h_median1d"
RUNS_IN_WINDOW_SIGMA: Final = "kind_job_name_tenant:jobtrack_runs:increase1h_sigma1d"
RESOURCES_IN_WINDOW_MEDIAN: Final = "kind_job_name_tenant:jobtrack_resources:increase1h_median1d"
RESOURCES_IN_WINDOW_SIGMA: Final = "kind_job_name_tenant:jobtrack_resources:increase1h_sigma1d"
DURATION_P95_MEDIAN: Final = "kind_job_name:jobtrack_run_duration_seconds:p95_1h_median1d"

RULES_FILE: Final = "jobtrack-rules.yaml"
KUBERNETES_FILE: Final = "kubernetes/prometheus-rule.yaml"
README_FILE: Final = "README.md"

IQR_TO_SIGMA: Final = 1.349
"""Inter-quartile range of a normal distribution in standard deviations (2 x 0.6745)."""

# ---------------------------------------------------------------------------------- durations

_UNITS: Final = (
    ("y", 365 * 86400),
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)
_DURATION_RE: Final = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``90s``, ``1h30m`` or ``1d``."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a duration: {text!r}")
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2)
        scale = 0.001 if unit == "ms" else dict(_UNITS)[unit]
        total += int(match.group(1)) * scale
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"not a Prometheus duration: {text!r} (e.g. 30s, 5m, 1h30m, 1d)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``93600`` -> ``1d2h``)."""
    rest = int(seconds)
    if rest != seconds or rest < 0:
        raise ValueError(f"durations are whole, non-negative seconds: {seconds}")
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS[2:]:  # days and below: weeks and years read badly in names
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def _canonical(duration: str) -> str:
    return format_duration(parse_duration(duration))


def _number(value: float) -> str:
    """A float as PromQL text without noise (``3.0`` -> ``3``)."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


_DEFAULT_SEVERITIES: Final = {
    MISSED_RUN: "critical",
    RUN_STUCK: "warning",
    EXPORTER_DOWN: "warning",
    RUN_FAILURES: "warning",
    RUNS_LIMITED: "warning",
    RESOURCES_ZERO: "warning",
    RUNS_BELOW_EXPECTED: "warning",
    RESOURCE_VOLUME_HIGH: "warning",
    RESOURCE_VOLUME_LOW: "warning",
    DURATION_DRIFT: "warning",
    INSTRUMENTATION_ERRORS: "info",
    EXPORT_ERRORS: "warning",
}
_DEFAULT_FOR: Final = {
    MISSED_RUN: "1m",
    RUN_STUCK: "1m",
    EXPORTER_DOWN: "5m",
    RUN_FAILURES: "5m",
    RUNS_LIMITED: "15m",
    RESOURCES_ZERO: "15m",
    RUNS_BELOW_EXPECTED: "15m",
    RESOURCE_VOLUME_HIGH: "15m",
    RESOURCE_VOLUME_LOW: "15m",
    DURATION_DRIFT: "30m",
    INSTRUMENTATION_ERRORS: "0s",
    EXPORT_ERRORS: "10m",
}


@dataclass(frozen=True)
class RulesConfig:
    """Every setting the rules are generated from; the defaults produce the shipped files."""

    selector: str = ""
    """Extra label matchers added to every ``jobtrack_*`` selector, e.g. ``job="billing"``."""
    grafana_url: str = "http://localhost:3000"
    """Grafana base URL for the ``dashboard_url`` annotation (``<url>/d/<uid>``)."""
    runbook_url: str = shipped.doc_url(shipped.RUNBOOK)
    """Where the runbook is served; each alert links to ``<runbook_url>#<alert name>``. The
    default is ``docs/runbook.md`` in the project's repository (``otel-jobtrack runbook``
    prints the copy that is installed); point it at your own copy to add your procedures."""
    interval: str = "1m"
    """Evaluation interval of the rule groups."""
    rate_window: str = "5m"
    """Window of the breakdown rates (dashboards, and the input of the drift test)."""
    alert_window: str = "1h"
    """Window of the ratio, zero-resource and volume alerts and the short side of the drift."""
    baseline_window: str = "1d"
    """History the outlier alerts learn "usual" from (before the current alert window)."""
    lookback: str = "2d"
    """How long a last success and a declared cadence outlive the target that exported them."""
    default_grace_seconds: float = 60.0
    """Grace for jobs that declare an interval but no ``grace=``."""
    min_runs: float = 3.0
    """Runs in the alert window below which ratios and drift are not judged (no flapping)."""
    failure_ratio: float = 0.1
    """Share of failed runs in the alert window above which ``JobTrackRunFailures`` fires."""
    limited_ratio: float = 0.25
    """Share of limited runs in the alert window above which limiting may alert..."""
    limited_growth: float = 2.0
    """...when it is also this many times the share over the baseline window."""
    zero_resource_kinds: tuple[str, ...] = ("cron", "schedule")
    """Kinds for which touching no resources during a whole alert window is an alert."""
    below_expected_kinds: tuple[str, ...] = ("cron", "schedule")
    """Kinds whose invocation count is checked against its usual range."""
    outlier_k: float = 3.0
    """Hampel ``k``: how many robust standard deviations from the median count as unusual."""
    outlier_min_relative_sigma: float = 0.1
    """Floor of the robust standard deviation, as a share of the median (regular jobs)."""
    volume_min_resources: float = 100.0
    """Resources per alert window below which a tenant's volume is not judged."""
    drift_quantile: float = 0.95
    """Duration quantile compared by the drift alert."""
    drift_ratio: float = 1.5
    """The quantile over the alert window must exceed this many times its rolling median..."""
    drift_min_increase_seconds: float = 1.0
    """...and grow by at least this many seconds (5 ms to 10 ms is not worth a page)."""
    missed_run_per_tenant: bool = True
    """Judge missed runs per tenant (``False``: one alert per job, any tenant's success counts)."""
    severities: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_SEVERITIES))
    """``severity`` label per alert name."""
    for_durations: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_FOR))
    """``for:`` per alert name (how long the condition must hold before firing)."""
    disabled: tuple[str, ...] = ()
    """Alert names to leave out."""
    kubernetes: bool = True
    """Also write a prometheus-operator ``PrometheusRule`` manifest."""
    kubernetes_name: str = "otel-jobtrack"
    kubernetes_namespace: str = ""
    kubernetes_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of the ``PrometheusRule`` (e.g. the ``release`` your operator selects on)."""

    def __post_init__(self) -> None:
        for name in ("interval", "rate_window", "alert_window", "baseline_window", "lookback"):
            if parse_duration(_canonical(getattr(self, name))) <= 0:
                raise ValueError(f"{name} must be a positive duration")
        unknown = (set(self.severities) | set(self.for_durations) | set(self.disabled)) - set(
            ALERT_NAMES
        )
        if unknown:
            raise ValueError(f"unknown alert names {sorted(unknown)}; known: {list(ALERT_NAMES)}")
        for name in ALERT_NAMES:
            if name not in self.severities or name not in self.for_durations:
                raise ValueError(f"severities and for_durations need an entry for {name}")
            _canonical(self.for_durations[name])
        for kinds in (self.zero_resource_kinds, self.below_expected_kinds):
            bad = set(kinds) - set(c.KINDS)
            if bad or not kinds:
                raise ValueError(f"kinds must be a non-empty subset of {c.KINDS}, got {kinds}")
        if not 0 < self.drift_quantile < 1:
            raise ValueError("drift_quantile must be between 0 and 1")
        if any(ch in self.selector for ch in "{}"):
            raise ValueError('selector holds matchers only, without braces: job="billing"')


DEFAULT_CONFIG: Final = RulesConfig()

# ---------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class Names:
    """Recording-rule names for one configuration (the windows appear in the names)."""

    runs_rate_by_kind: str
    runs_rate_by_job: str
    runs_rate_by_tenant: str
    resources_rate_by_kind: str
    resources_rate_by_job: str
    resources_rate_by_tenant: str
    duration_sum_rate_by_kind: str
    duration_sum_rate_by_job: str
    duration_sum_rate_by_tenant: str
    duration_bucket_rate_by_kind: str
    duration_bucket_rate_by_job: str
    duration_bucket_rate_by_tenant: str
    runs_by_state_in_window: str
    runs_in_window: str
    resources_in_window: str
    duration_quantile_in_window: str
    last_success: str
    expected_interval: str
    grace: str
    max_runtime: str
    oldest_run_start: str
    jobs_per_target: str
    runs_in_window_median: str
    runs_in_window_sigma: str
    resources_in_window_median: str
    resources_in_window_sigma: str
    duration_quantile_median: str

    @classmethod
    def for_config(cls, cfg: RulesConfig) -> Names:
        rate = "rate" + _canonical(cfg.rate_window)
        inc = "increase" + _canonical(cfg.alert_window)
        base = "median" + _canonical(cfg.baseline_window)
        sigma = "sigma" + _canonical(cfg.baseline_window)
        pct = f"p{_number(round(cfg.drift_quantile * 100, 3))}".replace(".", "_")
        quantile = f"{pct}_{_canonical(cfg.alert_window)}"
        runs, res = "jobtrack_runs", "jobtrack_resources"
        dur = "jobtrack_run_duration_seconds"
        return cls(
            runs_rate_by_kind=f"kind_state:{runs}:{rate}",
            runs_rate_by_job=f"kind_job_name_state:{runs}:{rate}",
            runs_rate_by_tenant=f"kind_tenant_state:{runs}:{rate}",
            resources_rate_by_kind=f"kind:{res}:{rate}",
            resources_rate_by_job=f"kind_job_name:{res}:{rate}",
            resources_rate_by_tenant=f"kind_tenant:{res}:{rate}",
            duration_sum_rate_by_kind=f"kind_state:{dur}_sum:{rate}",
            duration_sum_rate_by_job=f"kind_job_name_state:{dur}_sum:{rate}",
            duration_sum_rate_by_tenant=f"kind_tenant_state:{dur}_sum:{rate}",
            duration_bucket_rate_by_kind=f"kind_le:{dur}_bucket:{rate}",
            duration_bucket_rate_by_job=f"kind_job_name_le:{dur}_bucket:{rate}",
            duration_bucket_rate_by_tenant=f"kind_tenant_le:{dur}_bucket:{rate}",
            runs_by_state_in_window=f"kind_job_name_tenant_state:{runs}:{inc}",
            runs_in_window=f"kind_job_name_tenant:{runs}:{inc}",
            resources_in_window=f"kind_job_name_tenant:{res}:{inc}",
            duration_quantile_in_window=f"kind_job_name:{dur}:{quantile}",
            last_success="kind_job_name_tenant:jobtrack_last_success_timestamp_seconds:max",
            expected_interval="kind_job_name:jobtrack_job_expected_interval_seconds:max",
            grace="kind_job_name:jobtrack_job_grace_seconds:max",
            max_runtime="kind_job_name:jobtrack_job_max_runtime_seconds:max",
            oldest_run_start="kind_job_name_tenant:jobtrack_oldest_run_start_timestamp_seconds:min",
            jobs_per_target="job_instance:jobtrack_jobs:count",
            runs_in_window_median=f"kind_job_name_tenant:{runs}:{inc}_{base}",
            runs_in_window_sigma=f"kind_job_name_tenant:{runs}:{inc}_{sigma}",
            resources_in_window_median=f"kind_job_name_tenant:{res}:{inc}_{base}",
            resources_in_window_sigma=f"kind_job_name_tenant:{res}:{inc}_{sigma}",
            duration_quantile_median=f"kind_job_name:{dur}:{quantile}_{base}",
        )


# ---------------------------------------------------------------------------------- PromQL

_KJT: Final = "kind, job_name, tenant"
_KJ: Final = "kind, job_name"
_SUCCESS_MATCHER: Final = f'state="{c.SUCCESS}"'


def _sel(cfg: RulesConfig, metric: str, *matchers: str) -> str:
    """``metric{user selector, matchers}``: every raw jobtrack_* selector goes through here."""
    parts = [m for m in (cfg.selector.strip().rstrip(","), *matchers) if m]
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def _kinds(kinds: Sequence[str]) -> str:
    return f'kind="{kinds[0]}"' if len(kinds) == 1 else f'kind=~"{"|".join(kinds)}"'


def _indent(text: str, spaces: int = 2) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _history_guard(cfg: RulesConfig, series: str, by: str) -> str:
    """``and`` clause keeping only series old enough for a clean baseline.

    A window count ramps up during its first alert window; the baseline covers
    ``[now - window - baseline, now - window]``; so the series must have existed
    ``2 x window + baseline`` ago for the baseline to hold only complete windows.
    """
    age = 2 * parse_duration(cfg.alert_window) + parse_duration(cfg.baseline_window)
    return f"and on ({by})\n  {series} offset {format_duration(age)}"


def _baseline_range(cfg: RulesConfig, series: str) -> str:
    return f"{series}[{_canonical(cfg.baseline_window)}] offset {_canonical(cfg.alert_window)}"


def _median_expr(cfg: RulesConfig, series: str, by: str) -> str:
    return (
        f"quantile_over_time(0.5, {_baseline_range(cfg, series)})\n"
        f"{_history_guard(cfg, series, by)}"
    )


def _sigma_expr(cfg: RulesConfig, series: str, median: str) -> str:
    """Robust standard deviation: IQR / 1.349, floored at a share of the median."""
    rng = _baseline_range(cfg, series)
    floor = f"{median} * {_number(cfg.outlier_min_relative_sigma)}"
    return (
        "(\n"
        f"    quantile_over_time(0.75, {rng})\n"
        f"  - quantile_over_time(0.25, {rng})\n"
        f") / {IQR_TO_SIGMA}\n"
        f">= {floor}\n"
        f"or {floor}"
    )


def recording_groups(cfg: RulesConfig) -> list[dict[str, Any]]:
    """The two recording groups: breakdowns (dashboards) and alert windows and baselines."""
    n = Names.for_config(cfg)
    w = _canonical(cfg.rate_window)
    aw = _canonical(cfg.alert_window)
    runs = _sel(cfg, c.RUNS_TOTAL)
    resources = _sel(cfg, c.RESOURCES_TOTAL)
    dsum = _sel(cfg, c.RUN_DURATION + "_sum")
    dbucket = _sel(cfg, c.RUN_DURATION + "_bucket")

    def rec(name: str, expr: str) -> dict[str, Any]:
        return {"record": name, "expr": expr}

    breakdowns = [
        rec(n.runs_rate_by_kind, f"sum by (kind, state) (rate({runs}[{w}]))"),
        rec(n.runs_rate_by_job, f"sum by (kind, job_name, state) (rate({runs}[{w}]))"),
        rec(n.runs_rate_by_tenant, f"sum by (kind, tenant, state) (rate({runs}[{w}]))"),
        rec(n.resources_rate_by_kind, f"sum by (kind) (rate({resources}[{w}]))"),
        rec(n.resources_rate_by_job, f"sum by (kind, job_name) (rate({resources}[{w}]))"),
        rec(n.resources_rate_by_tenant, f"sum by (kind, tenant) (rate({resources}[{w}]))"),
        rec(n.duration_sum_rate_by_kind, f"sum by (kind, state) (rate({dsum}[{w}]))"),
        rec(n.duration_sum_rate_by_job, f"sum by (kind, job_name, state) (rate({dsum}[{w}]))"),
        rec(n.duration_sum_rate_by_tenant, f"sum by (kind, tenant, state) (rate({dsum}[{w}]))"),
        rec(n.duration_bucket_rate_by_kind, f"sum by (kind, le) (rate({dbucket}[{w}]))"),
        rec(n.duration_bucket_rate_by_job, f"sum by (kind, job_name, le) (rate({dbucket}[{w}]))"),
        rec(n.duration_bucket_rate_by_tenant, f"sum by (kind, tenant, le) (rate({dbucket}[{w}]))"),
    ]
    # "and <counter>": only series still exported. A dead process's counts would otherwise
    # decay over a whole window and look like a job running less (that is MissedRun's and
    # ExporterDown's news).
    windows = [
        rec(
            n.runs_by_state_in_window,
            f"sum by (kind, job_name, tenant, state) (increase({runs}[{aw}]) and {runs})",
        ),
        rec(n.runs_in_window, f"sum without (state) ({n.runs_by_state_in_window})"),
        rec(
            n.resources_in_window,
            f"sum by ({_KJT}) (increase({resources}[{aw}]) and {resources})",
        ),
        rec(
            n.duration_quantile_in_window,
            # avg_over_time of the recorded per-job bucket rates ~ the rate over the window,
            # read from a few aggregated series instead of every raw bucket; ">= 0" drops the
            # NaN of windows without runs.
            f"histogram_quantile(\n  {_number(cfg.drift_quantile)},\n"
            f"  avg_over_time({n.duration_bucket_rate_by_job}[{aw}])\n) >= 0",
        ),
        rec(
            n.last_success, f"max by ({_KJT}) ({_sel(cfg, c.LAST_RUN_TIMESTAMP, _SUCCESS_MATCHER)})"
        ),
        rec(n.expected_interval, f"max by ({_KJ}) ({_sel(cfg, c.EXPECTED_INTERVAL)})"),
        rec(n.grace, f"max by ({_KJ}) ({_sel(cfg, c.GRACE)})"),
        rec(n.max_runtime, f"max by ({_KJ}) ({_sel(cfg, c.MAX_RUNTIME)})"),
        rec(
            n.oldest_run_start,
            # Only while the same exporter reports a run in progress: over OTLP the gauge of a
            # finished run lingers until the backend's lookback ends, and must not look stuck.
            f"min by ({_KJT}) (\n  {_sel(cfg, c.OLDEST_RUN_START)}\n"
            f"  and {_sel(cfg, c.RUNS_IN_PROGRESS)} > 0\n)",
        ),
        rec(
            n.jobs_per_target,
            # Jobs a target exports (run or declared): marks the targets that are ours.
            "count by (job, instance) (\n"
            "  group by (job, instance, kind, job_name) (\n"
            f"    {_sel(cfg, c.RUNS_IN_PROGRESS)}\n"
            f"    or {_sel(cfg, c.EXPECTED_INTERVAL)}\n"
            "  )\n)",
        ),
        rec(n.runs_in_window_median, _median_expr(cfg, n.runs_in_window, _KJT)),
        rec(n.runs_in_window_sigma, _sigma_expr(cfg, n.runs_in_window, n.runs_in_window_median)),
        rec(n.resources_in_window_median, _median_expr(cfg, n.resources_in_window, _KJT)),
        rec(
            n.resources_in_window_sigma,
            _sigma_expr(cfg, n.resources_in_window, n.resources_in_window_median),
        ),
        rec(n.duration_quantile_median, _median_expr(cfg, n.duration_quantile_in_window, _KJ)),
    ]
    interval = _canonical(cfg.interval)
    return [
        {"name": "jobtrack-breakdowns", "interval": interval, "rules": breakdowns},
        {"name": "jobtrack-windows", "interval": interval, "rules": windows},
    ]


# ---------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class _Alert:
    name: str
    expr: str
    summary: str
    meaning: str
    """One plain line for the README."""
    description: str
    url_labels: tuple[str, ...]
    """Labels the alert carries that a dashboard can filter on (``kind`` picks the board)."""


_WHO: Final = (
    "{{ $labels.kind }} job {{ $labels.job_name }} "
    "({{ with $labels.tenant }}tenant {{ . }}{{ else }}all tenants{{ end }})"
)


def _alert_specs(cfg: RulesConfig) -> list[_Alert]:
    n = Names.for_config(cfg)
    lb = _canonical(cfg.lookback)
    aw = _canonical(cfg.alert_window)
    bw = _canonical(cfg.baseline_window)
    k = _number(cfg.outlier_k)
    min_runs = _number(cfg.min_runs)
    per_tenant = cfg.missed_run_per_tenant
    kjt = ("kind", "job_name", "tenant")
    kj = ("kind", "job_name")

    last_success = f"last_over_time({n.last_success}[{lb}])"
    if not per_tenant:
        last_success = f"max by ({_KJ}) ({last_success})"
    interval = f"last_over_time({n.expected_interval}[{lb}])"
    missed = (
        f"time() - {last_success}\n"
        f"> on ({_KJ}) group_left ()\n"
        "(\n"
        f"    {interval}\n"
        f"  + on ({_KJ})\n"
        "  (\n"
        f"      last_over_time({n.grace}[{lb}])\n"
        f"    or\n"
        f"      {interval} * 0 + {_number(cfg.default_grace_seconds)}\n"
        "  )\n"
        ")"
    )
    stuck = (
        f"time() - {n.oldest_run_start}\n"
        f"> on ({_KJ}) group_left ()\n"
        f"last_over_time({n.max_runtime}[{lb}])"
    )
    down = f"last_over_time({n.jobs_per_target}[{lb}])\nand on (job, instance)\nup == 0"

    def share(state: str) -> str:
        return (
            f'{n.runs_by_state_in_window}{{state="{state}"}}\n'
            f"/ ignoring (state)\n{n.runs_in_window}"
        )

    enough_runs = f"and on ({_KJT})\n{n.runs_in_window} >= {min_runs}"
    failures = f"(\n{_indent(share('failure'))}\n) > {_number(cfg.failure_ratio)}\n{enough_runs}"
    before = f"[{bw}] offset {aw}"
    limited = (
        f"(\n  (\n{_indent(share('limited'), 4)}\n  ) > {_number(cfg.limited_ratio)}\n"
        f"{_indent(enough_runs)}\n)\n"
        f"> on ({_KJT})\n"
        f"{_number(cfg.limited_growth)} * (\n"
        f'    sum_over_time({n.runs_by_state_in_window}{{state="limited"}}{before})\n'
        f"  / ignoring (state)\n"
        f"    sum_over_time({n.runs_in_window}{before})\n"
        f"  or\n"
        f"    sum_over_time({n.runs_in_window}{before}) * 0\n"
        ")\n"
        f"{_history_guard(cfg, n.runs_in_window, _KJT)}"
    )
    zero_kinds = _kinds(cfg.zero_resource_kinds)
    zero = (
        f"sum without (state) (\n"
        f'  {n.runs_by_state_in_window}{{state="success", {zero_kinds}}}\n'
        f") >= {min_runs}\n"
        f"and on ({_KJT})\n{n.resources_in_window} == 0\n"
        # The counter existed a whole window ago: zero for the whole window, not since birth.
        f"and on ({_KJT})\n{n.resources_in_window} offset {aw}"
    )
    below = (
        f"{n.runs_in_window}{{{_kinds(cfg.below_expected_kinds)}}}\n"
        f"< on ({_KJT})\n"
        f"({n.runs_in_window_median} - {k} * {n.runs_in_window_sigma})\n"
        f"and on ({_KJT})\n{n.runs_in_window_median} >= {min_runs}"
    )
    min_volume = _number(cfg.volume_min_resources)
    high = (
        f"{n.resources_in_window}\n"
        f"> on ({_KJT})\n"
        f"({n.resources_in_window_median} + {k} * {n.resources_in_window_sigma})\n"
        f"and {n.resources_in_window} >= {min_volume}"
    )
    low = (
        f"{n.resources_in_window}\n"
        f"< on ({_KJT})\n"
        f"({n.resources_in_window_median} - {k} * {n.resources_in_window_sigma})\n"
        f"and on ({_KJT})\n{n.resources_in_window_median} >= {min_volume}\n"
        # Nothing at all from a scheduler is JobTrackResourcesZero's (or, when it stopped
        # running, JobTrackRunsBelowExpected's) to report.
        f"unless on ({_KJT})\n{n.resources_in_window}{{{zero_kinds}}} == 0"
    )
    q = n.duration_quantile_in_window
    drift = (
        f"{q}\n"
        f"> {_number(cfg.drift_ratio)} * {n.duration_quantile_median}\n"
        f"and\n{q} - {n.duration_quantile_median} > {_number(cfg.drift_min_increase_seconds)}\n"
        f"and on ({_KJ})\nsum by ({_KJ}) ({n.runs_in_window}) >= {min_runs}"
    )

    def self_errors(metric: str, label: str) -> str:
        sel = _sel(cfg, metric)
        by = f"job, instance, {label}"
        # A counter appears at its first error, which increase() cannot see: count a series
        # that did not exist a window ago as new errors too.
        return (
            f"sum by ({by}) (increase({sel}[{aw}])) > 0\n"
            f"or\nsum by ({by}) ({sel} unless {sel} offset {aw})"
        )

    pct = _number(round(cfg.drift_quantile * 100, 3))
    return [
        _Alert(
            MISSED_RUN,
            missed,
            "{{ $labels.job_name }} has not succeeded within its expected interval",
            "no success within the declared interval plus grace, even after its process died",
            f"{_WHO} last succeeded {{{{ $value | humanizeDuration }}}} ago, longer than the "
            "expected interval plus grace it declares. It is not running, not finishing, or "
            "its process is gone.",
            kjt if per_tenant else kj,
        ),
        _Alert(
            RUN_STUCK,
            stuck,
            "{{ $labels.job_name }} has a run in progress longer than its max runtime",
            "a run in progress longer than the declared max_runtime",
            f"{_WHO} has had a run in progress for {{{{ $value | humanizeDuration }}}}, longer "
            "than the max_runtime it declares.",
            kjt,
        ),
        _Alert(
            EXPORTER_DOWN,
            down,
            "Job metrics of {{ $labels.instance }} cannot be scraped",
            "a target that exported job metrics cannot be scraped",
            "Prometheus cannot scrape {{ $labels.instance }} (scrape job {{ $labels.job }}), "
            "which exported otel-jobtrack metrics of {{ $value }} job(s). None of them can be "
            "seen until it is back.",
            (),
        ),
        _Alert(
            RUN_FAILURES,
            failures,
            "{{ $labels.job_name }} fails {{ $value | humanizePercentage }} of its runs",
            "share of failed runs in the alert window above a threshold",
            f"{_WHO}: {{{{ $value | humanizePercentage }}}} of its runs in the last {aw} "
            f"failed (threshold {_number(round(cfg.failure_ratio * 100, 6))}%).",
            kjt,
        ),
        _Alert(
            RUNS_LIMITED,
            limited,
            "{{ $labels.job_name }} is increasingly refused by its concurrency limit",
            "share of limited runs high and rising against the baseline",
            f"{_WHO}: {{{{ $value | humanizePercentage }}}} of its runs in the last {aw} were "
            f"limited, over {_number(cfg.limited_growth)} times the share of the previous "
            f"{bw}. Something holds its lock or the limit is too low.",
            kjt,
        ),
        _Alert(
            RESOURCES_ZERO,
            zero,
            "{{ $labels.job_name }} runs but touches no resources",
            "a cron or scheduler runs but touches no resources for a whole window",
            f"{_WHO} succeeded {{{{ $value | humanize }}}} times in the last {aw} and touched "
            "no resources at all: it finds nothing to schedule.",
            kjt,
        ),
        _Alert(
            RUNS_BELOW_EXPECTED,
            below,
            "{{ $labels.job_name }} runs less often than usual",
            "invocation count below its rolling median band (Hampel, low side)",
            f"{_WHO} ran {{{{ $value | humanize }}}} times in the last {aw}, below its usual "
            f"range (rolling median minus {k} robust deviations over the previous {bw}).",
            kjt,
        ),
        _Alert(
            RESOURCE_VOLUME_HIGH,
            high,
            "{{ $labels.job_name }} touches unusually many resources",
            "a tenant's resource volume above its rolling median band",
            f"{_WHO} touched {{{{ $value | humanize }}}} resources in the last {aw}, above its "
            f"usual range (rolling median plus {k} robust deviations over the previous {bw}).",
            kjt,
        ),
        _Alert(
            RESOURCE_VOLUME_LOW,
            low,
            "{{ $labels.job_name }} touches unusually few resources",
            "a tenant's resource volume below its rolling median band",
            f"{_WHO} touched {{{{ $value | humanize }}}} resources in the last {aw}, below its "
            f"usual range (rolling median minus {k} robust deviations over the previous {bw}).",
            kjt,
        ),
        _Alert(
            DURATION_DRIFT,
            drift,
            "{{ $labels.job_name }} is getting slower",
            "duration quantile over the window well above its rolling median",
            f"{_WHO}: p{pct} duration over the last {aw} is {{{{ $value | humanizeDuration }}}}, "
            f"over {_number(cfg.drift_ratio)} times its median over the previous {bw}.",
            kj,
        ),
        _Alert(
            INSTRUMENTATION_ERRORS,
            self_errors(c.INSTRUMENTATION_ERRORS, "where"),
            "otel-jobtrack had problems in {{ $labels.instance }}",
            "otel-jobtrack counted problems in its own instrumentation",
            "otel-jobtrack in {{ $labels.instance }} (scrape job {{ $labels.job }}) counted "
            f"{{{{ $value | humanize }}}} problem(s) in {{{{ $labels.where }}}} in the last {aw}. "
            "The jobs ran unaffected, but their numbers may be incomplete.",
            (),
        ),
        _Alert(
            EXPORT_ERRORS,
            self_errors(c.EXPORT_ERRORS, "exporter"),
            "otel-jobtrack cannot deliver metrics from {{ $labels.instance }}",
            "otel-jobtrack fails to export to a backend",
            "otel-jobtrack in {{ $labels.instance }} (scrape job {{ $labels.job }}) failed "
            f"{{{{ $value | humanize }}}} times in the last {aw} to export via "
            "{{ $labels.exporter }}; that backend is missing data.",
            (),
        ),
    ]


def _dashboard_url(cfg: RulesConfig, url_labels: Sequence[str]) -> str:
    base = cfg.grafana_url.rstrip("/") + "/d/"
    if "kind" not in url_labels:
        return base + CRON_DASHBOARD_UID
    board = (
        f'{{{{ if eq $labels.kind "cron" }}}}{CRON_DASHBOARD_UID}'
        f"{{{{ else }}}}{SCHEDULE_DASHBOARD_UID}{{{{ end }}}}"
    )
    query = "&".join(f"var-{lbl}={{{{ $labels.{lbl} | urlquery }}}}" for lbl in url_labels)
    return f"{base}{board}?{query}"


def runbook_anchor(alert_name: str) -> str:
    """The anchor of an alert's section in docs/runbook.md (a heading ``## <name>``)."""
    return alert_name.lower()


def alert_rules(cfg: RulesConfig) -> list[dict[str, Any]]:
    """Alert rules (as plain data) for every alert not disabled."""
    rules = []
    for spec in _alert_specs(cfg):
        if spec.name in cfg.disabled:
            continue
        rules.append(
            {
                "alert": spec.name,
                "expr": spec.expr,
                "for": _canonical(cfg.for_durations[spec.name]),
                "labels": {"severity": cfg.severities[spec.name]},
                "annotations": {
                    "summary": spec.summary,
                    "description": spec.description,
                    "runbook_url": f"{cfg.runbook_url}#{runbook_anchor(spec.name)}",
                    "dashboard_url": _dashboard_url(cfg, spec.url_labels),
                },
            }
        )
    return rules


def rule_groups(cfg: RulesConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """The rule file content: recording groups then the alert group."""
    groups = recording_groups(cfg)
    groups.append(
        {"name": "jobtrack-alerts", "interval": _canonical(cfg.interval), "rules": alert_rules(cfg)}
    )
    return {"groups": groups}


# ---------------------------------------------------------------------------------- files


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "otel-jobtrack rules needs PyYAML: pip install 'otel-jobtrack[rules]'"
        ) from None
    return yaml


def _dump(data: Any) -> str:
    yaml = _yaml()

    class Dumper(yaml.SafeDumper):  # type: ignore[misc,name-defined]
        pass

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    out: str = yaml.dump(data, Dumper=Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return out


def changed_settings(cfg: RulesConfig) -> dict[str, Any]:
    """Settings that differ from the defaults, as plain data (what a config file would hold)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RulesConfig):
        value, default = getattr(cfg, f.name), getattr(DEFAULT_CONFIG, f.name)
        if value == default:
            continue
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if default.get(k) != v}
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _header(cfg: RulesConfig) -> str:
    lines = [
        "Generated by `otel-jobtrack rules` (otel_jobtrack/rules.py). Do not edit by hand:",
        "change the settings and regenerate with",
        "  otel-jobtrack rules --output-dir alerts [--config settings.yaml] [--set key=value]",
    ]
    changed = changed_settings(cfg)
    if changed:
        lines.append("Settings that differ from the defaults (a --config file):")
        lines.extend("  " + line for line in _dump(changed).splitlines())
    else:
        lines.append("Settings: the defaults (otel-jobtrack rules --print-config).")
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _kubernetes_manifest(cfg: RulesConfig, groups: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": cfg.kubernetes_name}
    if cfg.kubernetes_namespace:
        metadata["namespace"] = cfg.kubernetes_namespace
    labels = {"app.kubernetes.io/name": "otel-jobtrack", **cfg.kubernetes_labels}
    metadata["labels"] = dict(labels)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": groups,
    }


def _readme(cfg: RulesConfig) -> str:
    names = Names.for_config(cfg)
    alerts = "\n".join(
        f"- `{a.name}` ({cfg.severities[a.name]}, for {_canonical(cfg.for_durations[a.name])}): "
        f"{a.meaning}"
        for a in _alert_specs(cfg)
        if a.name not in cfg.disabled
    )
    k8s = (
        f"- `{KUBERNETES_FILE}`: the same groups as a prometheus-operator `PrometheusRule`\n"
        "  (`kubectl apply -f`); add the labels your operator selects on with\n"
        "  `--set 'kubernetes_labels={release: my-prometheus}'`.\n"
        if cfg.kubernetes
        else ""
    )
    header = "".join(line[2:] + "\n" for line in _header(cfg).splitlines())
    return f"""<!--
{header}-->
# Prometheus rules for otel-jobtrack

- `{RULES_FILE}`: recording rules (per kind, job and tenant breakdowns of runs, resources and
  duration; alert windows and rolling baselines) and the alerts. Load it with
  `rule_files: [path/to/{RULES_FILE}]` in `prometheus.yml`.
{k8s}- `tests/`: `promtool test rules` cases, a firing and a healthy case for every alert
  (`promtool test rules alerts/tests/*.yaml`).

Alerts (what each means and what to check first: `otel-jobtrack runbook ALERT`, or
[the runbook]({cfg.runbook_url})):

{alerts}

Missed and stuck runs need no per-job rule: declare the cadence where the job is defined
(`every=`/`cron=`, `grace=`, `max_runtime=`) and it is exported as
`jobtrack_job_expected_interval_seconds` & co. Jobs that declare nothing still get the ratio
and outlier alerts.

## Regenerate with your own settings

These files are the output of `otel-jobtrack rules` with the default settings; a test fails
when they are stale. To use your own selector, thresholds, windows or severities:

```sh
otel-jobtrack rules --print-config > jobtrack-rules-settings.yaml   # every setting, editable
otel-jobtrack rules --config jobtrack-rules-settings.yaml --output-dir alerts
otel-jobtrack rules --selector 'job="billing-worker"' --set failure_ratio=0.2 \\
    --set 'severities={{JobTrackMissedRun: warning}}' --grafana-url https://grafana.example.org
otel-jobtrack rules --check          # exit 1 if the files differ from what would be generated
```

The breakdown recording rules are named `level:metric:operations`, e.g.
`{names.runs_rate_by_job}`; `otel_jobtrack.generators.rules` exports them as constants.
"""


def render(cfg: RulesConfig = DEFAULT_CONFIG) -> dict[str, str]:
    """Every generated file: path relative to the output directory -> content."""
    groups = rule_groups(cfg)
    header = _header(cfg)
    files = {RULES_FILE: header + _dump(groups), README_FILE: _readme(cfg)}
    if cfg.kubernetes:
        files[KUBERNETES_FILE] = header + _dump(_kubernetes_manifest(cfg, groups))
    return files


def stale_files(out_dir: Path, cfg: RulesConfig = DEFAULT_CONFIG) -> list[str]:
    """Generated files missing from ``out_dir`` or different from what ``cfg`` generates."""
    return generate.stale_files(render(cfg), out_dir)


def write(out_dir: Path, cfg: RulesConfig = DEFAULT_CONFIG) -> list[Path]:
    """Write every generated file under ``out_dir``; other files there are left alone."""
    return generate.write_files(render(cfg), out_dir)


# ---------------------------------------------------------------------------------- settings


def config_from_mapping(data: Mapping[str, Any], base: RulesConfig = DEFAULT_CONFIG) -> RulesConfig:
    """``base`` with the settings in ``data`` applied (maps are merged into the defaults)."""
    return generate.apply_settings(base, data)


def load_config(path: Path, base: RulesConfig = DEFAULT_CONFIG) -> RulesConfig:
    """Settings from a YAML (or JSON) file holding a mapping of setting -> value."""
    return config_from_mapping(generate.load_settings(path, _load_yaml), base)


def _load_yaml(text: str) -> Any:
    return _yaml().safe_load(text) or {}


def _parse_value(raw: str) -> Any:
    return _yaml().safe_load(raw) if raw.strip() else ""


def all_settings(cfg: RulesConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """Every setting as plain data (``--print-config``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RulesConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def _rules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grafana-url", help="Grafana base URL for dashboard links")
    parser.add_argument("--runbook-url", help="URL of the runbook (alerts link to #<alert>)")


def main(argv: list[str]) -> int:
    """``otel-jobtrack rules``: write (or ``--check``) the generated rule files."""
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack rules",
        description="Generate Prometheus recording and alert rules for otel-jobtrack metrics.",
    )
    generate.add_common_arguments(
        parser,
        "alerts",
        config_help="YAML file of settings (see --print-config)",
        set_help="one setting, value in YAML syntax (repeatable)",
        print_help="print every setting as YAML (a starting point for --config)",
        extra=_rules_arguments,
    )
    args = parser.parse_args(argv)
    gen = generate.Generator(
        prog="otel-jobtrack rules",
        default=DEFAULT_CONFIG,
        load_config=load_config,
        parse_value=_parse_value,
        config_from_mapping=config_from_mapping,
        option_keys=("selector", "grafana_url", "runbook_url"),
        errors=(OSError, ValueError, *_yaml_errors()),
        dump_settings=lambda cfg: _dump(all_settings(cfg)),
        stale_files=stale_files,
        write=write,
        shipped="alerts",
        needs=generate.Needs("yaml", "PyYAML", "rules", print_config=True),
        render=render,
    )
    return generate.run_generator(gen, args)


def _yaml_errors() -> tuple[type[Exception], ...]:
    try:
        import yaml
    except ImportError:  # the shipped files need no YAML
        return ()
    return (yaml.YAMLError,)
