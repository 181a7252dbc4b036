"""The recording rules, one function per group.

- breakdowns: per kind, per job and per tenant rates of runs, resources and duration (the
  ``total``/``jobs``/``tenants`` views), cheap for dashboards;
- windows: per job and tenant counts over the alert window, last success and declared
  cadence, shared by several alerts;
- baselines: the rolling medians and robust deviations of the window counts.

No rule reads a series recorded in its own group. Prometheus makes a recording visible to
the next rule of the same group at once, but vmalert (and any ruler writing through remote
write) persists a group's results asynchronously: a rule reading its own group's output gets
the previous evaluation's value, or nothing when that is older than the query's lookback
(vmalert-tool at a 5-minute interval). Reads across groups see the other group's latest
evaluation on every engine.
"""

from __future__ import annotations

from typing import Any

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.defaults import canonical_duration, number
from otel_jobtrack.generators.rules.config import RulesConfig
from otel_jobtrack.generators.rules.names import Names
from otel_jobtrack.generators.rules.promql import (
    KJ,
    KJT,
    SUCCESS_MATCHER,
    median_expr,
    sel,
    sigma_expr,
)

BREAKDOWNS_GROUP = "jobtrack-breakdowns"
WINDOWS_GROUP = "jobtrack-windows"
BASELINES_GROUP = "jobtrack-baselines"


def _rec(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def breakdown_rules(cfg: RulesConfig) -> list[dict[str, Any]]:
    """Rates per kind, per job and per tenant over the rate window."""
    n = Names.for_config(cfg)
    w = canonical_duration(cfg.rate_window)
    runs = sel(cfg, c.RUNS_TOTAL)
    resources = sel(cfg, c.RESOURCES_TOTAL)
    dsum = sel(cfg, c.RUN_DURATION + "_sum")
    dbucket = sel(cfg, c.RUN_DURATION + "_bucket")
    return [
        _rec(n.runs_rate_by_kind, f"sum by (kind, state) (rate({runs}[{w}]))"),
        _rec(n.runs_rate_by_job, f"sum by (kind, job_name, state) (rate({runs}[{w}]))"),
        _rec(n.runs_rate_by_tenant, f"sum by (kind, tenant, state) (rate({runs}[{w}]))"),
        _rec(n.resources_rate_by_kind, f"sum by (kind) (rate({resources}[{w}]))"),
        _rec(n.resources_rate_by_job, f"sum by (kind, job_name) (rate({resources}[{w}]))"),
        _rec(n.resources_rate_by_tenant, f"sum by (kind, tenant) (rate({resources}[{w}]))"),
        _rec(n.duration_sum_rate_by_kind, f"sum by (kind, state) (rate({dsum}[{w}]))"),
        _rec(n.duration_sum_rate_by_job, f"sum by (kind, job_name, state) (rate({dsum}[{w}]))"),
        _rec(n.duration_sum_rate_by_tenant, f"sum by (kind, tenant, state) (rate({dsum}[{w}]))"),
        _rec(n.duration_bucket_rate_by_kind, f"sum by (kind, le) (rate({dbucket}[{w}]))"),
        _rec(n.duration_bucket_rate_by_job, f"sum by (kind, job_name, le) (rate({dbucket}[{w}]))"),
        _rec(n.duration_bucket_rate_by_tenant, f"sum by (kind, tenant, le) (rate({dbucket}[{w}]))"),
    ]


def window_rules(cfg: RulesConfig) -> list[dict[str, Any]]:
    """Counts over the alert window, last success and declared cadence."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    runs = sel(cfg, c.RUNS_TOTAL)
    resources = sel(cfg, c.RESOURCES_TOTAL)
    targets = ", ".join(cfg.target_labels)
    # "and <counter>": only series still exported. A dead process's counts would otherwise
    # decay over a whole window and look like a job running less (that is MissedRun's and
    # ExporterDown's news).
    return [
        _rec(
            n.runs_by_state_in_window,
            f"sum by (kind, job_name, tenant, state) (increase({runs}[{aw}]) and {runs})",
        ),
        _rec(n.runs_in_window, f"sum by ({KJT}) (increase({runs}[{aw}]) and {runs})"),
        _rec(
            n.resources_in_window,
            f"sum by ({KJT}) (increase({resources}[{aw}]) and {resources})",
        ),
        _rec(
            n.duration_quantile_in_window,
            # avg_over_time of the recorded per-job bucket rates ~ the rate over the window,
            # read from a few aggregated series instead of every raw bucket; ">= 0" drops the
            # NaN of windows without runs.
            f"histogram_quantile(\n  {number(cfg.drift_quantile)},\n"
            f"  avg_over_time({n.duration_bucket_rate_by_job}[{aw}])\n) >= 0",
        ),
        _rec(
            n.last_success,
            f"max by ({KJT}) ({sel(cfg, c.LAST_RUN_TIMESTAMP, SUCCESS_MATCHER)})",
        ),
        _rec(
            n.last_run_target,
            # The target that reported each job's latest run (in any state): the missed-run
            # alert carries its labels, so that the target's own outage can explain it.
            f"topk by ({KJT}) (\n  1,\n"
            f"  max by ({KJT}, {targets}) ({sel(cfg, c.LAST_RUN_TIMESTAMP)})\n)",
        ),
        _rec(n.expected_interval, f"max by ({KJ}) ({sel(cfg, c.EXPECTED_INTERVAL)})"),
        _rec(n.grace, f"max by ({KJ}) ({sel(cfg, c.GRACE)})"),
        _rec(n.max_runtime, f"max by ({KJ}) ({sel(cfg, c.MAX_RUNTIME)})"),
        _rec(
            n.oldest_run_start,
            # Only while the same exporter reports a run in progress: over OTLP the gauge of a
            # finished run lingers until the backend's lookback ends, and must not look stuck.
            f"min by ({KJT}) (\n  {sel(cfg, c.OLDEST_RUN_START)}\n"
            f"  and {sel(cfg, c.RUNS_IN_PROGRESS)} > 0\n)",
        ),
        _rec(
            n.jobs_per_target,
            # Jobs a target exports (run or declared): marks the targets that are ours.
            f"count by ({targets}) (\n"
            f"  group by ({targets}, kind, job_name) (\n"
            f"    {sel(cfg, c.RUNS_IN_PROGRESS)}\n"
            f"    or {sel(cfg, c.EXPECTED_INTERVAL)}\n"
            "  )\n)",
        ),
    ]


def baseline_rules(cfg: RulesConfig) -> list[dict[str, Any]]:
    """Rolling medians and robust deviations of the window counts (read from history only)."""
    n = Names.for_config(cfg)
    return [
        _rec(n.runs_in_window_median, median_expr(cfg, n.runs_in_window, KJT)),
        _rec(n.runs_in_window_sigma, sigma_expr(cfg, n.runs_in_window, KJT)),
        _rec(n.resources_in_window_median, median_expr(cfg, n.resources_in_window, KJT)),
        _rec(n.resources_in_window_sigma, sigma_expr(cfg, n.resources_in_window, KJT)),
        _rec(n.duration_quantile_median, median_expr(cfg, n.duration_quantile_in_window, KJ)),
    ]


def recording_groups(cfg: RulesConfig) -> list[dict[str, Any]]:
    """The recording groups, in the order they are evaluated."""
    interval = canonical_duration(cfg.interval)
    return [
        {"name": BREAKDOWNS_GROUP, "interval": interval, "rules": breakdown_rules(cfg)},
        {"name": WINDOWS_GROUP, "interval": interval, "rules": window_rules(cfg)},
        {"name": BASELINES_GROUP, "interval": interval, "rules": baseline_rules(cfg)},
    ]
