"""The alerts, one function per alert (a :class:`AlertSpec` from the settings).

Missed and stuck runs come from the cadence declared in code (one generic rule for every
job); failure and zero-resource checks compare shares and counts over the alert window;
invocation counts and tenant volumes are judged against their own robust band (a
Hampel-style band: rolling median plus or minus ``k`` robust standard deviations, estimated
from the inter-quartile range); duration drift and limited runs compare now with before.
To add an alert: write its function, add it to :data:`ALERTS` and its name to
:data:`~otel_jobtrack.generators.rules.config.ALERT_NAMES`, then give it promtool cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.defaults import (
    CRON_DASHBOARD_UID,
    SCHEDULE_DASHBOARD_UID,
    canonical_duration,
    number,
)
from otel_jobtrack.generators.rules.config import (
    DURATION_DRIFT,
    EXPORT_ERRORS,
    EXPORTER_DOWN,
    INSTRUMENTATION_ERRORS,
    MISSED_RUN,
    RESOURCE_VOLUME_HIGH,
    RESOURCE_VOLUME_LOW,
    RESOURCES_ZERO,
    RUN_FAILURES,
    RUN_STUCK,
    RUNS_BELOW_EXPECTED,
    RUNS_LIMITED,
    RulesConfig,
)
from otel_jobtrack.generators.rules.names import Names
from otel_jobtrack.generators.rules.promql import KJ, KJT, history_guard, indent, kinds, sel

ALERTS_GROUP: Final = "jobtrack-alerts"


@dataclass(frozen=True)
class AlertSpec:
    """One alert: what it checks and what the person paged reads."""

    name: str
    expr: str
    summary: str
    meaning: str
    """One plain line for the README."""
    description: str
    url_labels: tuple[str, ...]
    """Labels the alert carries that a dashboard can filter on (``kind`` picks the board)."""


WHO: Final = (
    "{{ $labels.kind }} job {{ $labels.job_name }} "
    "({{ with $labels.tenant }}tenant {{ . }}{{ else }}all tenants{{ end }})"
)
_KJT_LABELS: Final = ("kind", "job_name", "tenant")
_KJ_LABELS: Final = ("kind", "job_name")


# ---------------------------------------------------------------------------------- shared parts


def _share(n: Names, state: str) -> str:
    """Share of the window's runs that ended in ``state``."""
    return f'{n.runs_by_state_in_window}{{state="{state}"}}\n/ ignoring (state)\n{n.runs_in_window}'


def _enough_runs(cfg: RulesConfig, n: Names) -> str:
    return f"and on ({KJT})\n{n.runs_in_window} >= {number(cfg.min_runs)}"


def with_target_labels(cfg: RulesConfig, expr: str, by: str) -> str:
    """``expr`` (one series per ``by``) labelled with the target that reported the job's
    latest run (``cfg.target_labels``; read over the lookback, so they outlive the target).

    An alert about a job whose target is down then shares the target's labels with
    ``JobTrackExporterDown``, and Alertmanager can inhibit one by the other. The value is
    unchanged; a job without such a record (rules older than the recording) keeps its alert,
    without the labels.
    """
    n = Names.for_config(cfg)
    lb = canonical_duration(cfg.lookback)
    latest = f"topk by ({by}) (1, last_over_time({n.last_run_target}[{lb}]))"
    return (
        f"{expr}\n"
        f"+ on ({by}) group_left ({', '.join(cfg.target_labels)})\n"
        f"(\n    0 * {latest}\n  or on ({by})\n    0 * {expr}\n)"
    )


def _self_errors(cfg: RulesConfig, metric: str, label: str) -> str:
    sel_ = sel(cfg, metric)
    by = f"job, instance, {label}"
    aw = canonical_duration(cfg.alert_window)
    # A counter appears at its first error, which increase() cannot see: count a series that
    # did not exist a window ago as new errors too.
    return (
        f"sum by ({by}) (increase({sel_}[{aw}])) > 0\n"
        f"or\nsum by ({by}) ({sel_} unless {sel_} offset {aw})"
    )


# ---------------------------------------------------------------------------------- the alerts


def missed_run(cfg: RulesConfig) -> AlertSpec:
    """No success within the declared interval plus grace, even after the process died."""
    n = Names.for_config(cfg)
    lb = canonical_duration(cfg.lookback)
    last_success = f"last_over_time({n.last_success}[{lb}])"
    if not cfg.missed_run_per_tenant:
        last_success = f"max by ({KJ}) ({last_success})"
    last_success = with_target_labels(cfg, last_success, KJT if cfg.missed_run_per_tenant else KJ)
    interval = f"last_over_time({n.expected_interval}[{lb}])"
    expr = (
        f"time()\n- (\n{indent(last_success)}\n)\n"
        f"> on ({KJ}) group_left ()\n"
        "(\n"
        f"    {interval}\n"
        f"  + on ({KJ})\n"
        "  (\n"
        f"      last_over_time({n.grace}[{lb}])\n"
        f"    or\n"
        f"      {interval} * 0 + {number(cfg.default_grace_seconds)}\n"
        "  )\n"
        ")"
    )
    return AlertSpec(
        MISSED_RUN,
        expr,
        "{{ $labels.job_name }} has not succeeded within its expected interval",
        "no success within the declared interval plus grace, even after its process died",
        f"{WHO} last succeeded {{{{ $value | humanizeDuration }}}} ago, longer than the "
        "expected interval plus grace it declares. It is not running, not finishing, or "
        "its process is gone.",
        _KJT_LABELS if cfg.missed_run_per_tenant else _KJ_LABELS,
    )


def run_stuck(cfg: RulesConfig) -> AlertSpec:
    """A run in progress longer than the declared ``max_runtime``."""
    n = Names.for_config(cfg)
    lb = canonical_duration(cfg.lookback)
    expr = (
        f"time() - {n.oldest_run_start}\n"
        f"> on ({KJ}) group_left ()\n"
        f"last_over_time({n.max_runtime}[{lb}])"
    )
    return AlertSpec(
        RUN_STUCK,
        expr,
        "{{ $labels.job_name }} has a run in progress longer than its max runtime",
        "a run in progress longer than the declared max_runtime",
        f"{WHO} has had a run in progress for {{{{ $value | humanizeDuration }}}}, longer "
        "than the max_runtime it declares.",
        _KJT_LABELS,
    )


def exporter_down(cfg: RulesConfig) -> AlertSpec:
    """A scrape target that exported job metrics is down."""
    n = Names.for_config(cfg)
    lb = canonical_duration(cfg.lookback)
    targets = ", ".join(cfg.target_labels)
    return AlertSpec(
        EXPORTER_DOWN,
        f"last_over_time({n.jobs_per_target}[{lb}])\nand on ({targets})\nup == 0",
        "Job metrics of {{ $labels.instance }} cannot be scraped",
        "a target that exported job metrics cannot be scraped",
        "Prometheus cannot scrape {{ $labels.instance }} (scrape job {{ $labels.job }}), "
        "which exported otel-jobtrack metrics of {{ $value }} job(s). None of them can be "
        "seen until it is back.",
        (),
    )


def run_failures(cfg: RulesConfig) -> AlertSpec:
    """Share of failed runs in the alert window above a threshold."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    expr = (
        f"(\n{indent(_share(n, c.FAILURE))}\n) > {number(cfg.failure_ratio)}\n"
        f"{_enough_runs(cfg, n)}"
    )
    return AlertSpec(
        RUN_FAILURES,
        expr,
        "{{ $labels.job_name }} fails {{ $value | humanizePercentage }} of its runs",
        "share of failed runs in the alert window above a threshold",
        f"{WHO}: {{{{ $value | humanizePercentage }}}} of its runs in the last {aw} "
        f"failed (threshold {number(round(cfg.failure_ratio * 100, 6))}%).",
        _KJT_LABELS,
    )


def runs_limited(cfg: RulesConfig) -> AlertSpec:
    """Share of limited runs high, and rising against the baseline window."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    bw = canonical_duration(cfg.baseline_window)
    before = f"[{bw}] offset {aw}"
    expr = (
        f"(\n  (\n{indent(_share(n, c.LIMITED), 4)}\n  ) > {number(cfg.limited_ratio)}\n"
        f"{indent(_enough_runs(cfg, n))}\n)\n"
        f"> on ({KJT})\n"
        f"{number(cfg.limited_growth)} * (\n"
        f'    sum_over_time({n.runs_by_state_in_window}{{state="limited"}}{before})\n'
        f"  / ignoring (state)\n"
        f"    sum_over_time({n.runs_in_window}{before})\n"
        f"  or\n"
        f"    sum_over_time({n.runs_in_window}{before}) * 0\n"
        ")\n"
        f"{history_guard(cfg, n.runs_in_window, KJT)}"
    )
    return AlertSpec(
        RUNS_LIMITED,
        expr,
        "{{ $labels.job_name }} is increasingly refused by its concurrency limit",
        "share of limited runs high and rising against the baseline",
        f"{WHO}: {{{{ $value | humanizePercentage }}}} of its runs in the last {aw} were "
        f"limited, over {number(cfg.limited_growth)} times the share of the previous "
        f"{bw}. Something holds its lock or the limit is too low.",
        _KJT_LABELS,
    )


def resources_zero(cfg: RulesConfig) -> AlertSpec:
    """A cron or scheduler keeps succeeding but touches no resources for a whole window."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    min_runs = number(cfg.min_runs)
    expr = (
        f"sum without (state) (\n"
        f'  {n.runs_by_state_in_window}{{state="success", {kinds(cfg.zero_resource_kinds)}}}\n'
        f") >= {min_runs}\n"
        f"and on ({KJT})\n{n.resources_in_window} == 0\n"
        # The counter existed a whole window ago: zero for the whole window, not since birth.
        f"and on ({KJT})\n{n.resources_in_window} offset {aw}"
    )
    return AlertSpec(
        RESOURCES_ZERO,
        expr,
        "{{ $labels.job_name }} runs but touches no resources",
        "a cron or scheduler runs but touches no resources for a whole window",
        f"{WHO} succeeded {{{{ $value | humanize }}}} times in the last {aw} and touched "
        "no resources at all: it finds nothing to schedule.",
        _KJT_LABELS,
    )


def runs_below_expected(cfg: RulesConfig) -> AlertSpec:
    """Invocation count below its rolling median band (Hampel, low side)."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    bw = canonical_duration(cfg.baseline_window)
    k = number(cfg.outlier_k)
    expr = (
        f"{n.runs_in_window}{{{kinds(cfg.below_expected_kinds)}}}\n"
        f"< on ({KJT})\n"
        f"({n.runs_in_window_median} - {k} * {n.runs_in_window_sigma})\n"
        f"and on ({KJT})\n{n.runs_in_window_median} >= {number(cfg.min_runs)}"
    )
    return AlertSpec(
        RUNS_BELOW_EXPECTED,
        expr,
        "{{ $labels.job_name }} runs less often than usual",
        "invocation count below its rolling median band (Hampel, low side)",
        f"{WHO} ran {{{{ $value | humanize }}}} times in the last {aw}, below its usual "
        f"range (rolling median minus {k} robust deviations over the previous {bw}).",
        _KJT_LABELS,
    )


def resource_volume_high(cfg: RulesConfig) -> AlertSpec:
    """A tenant's resource volume above its rolling median band."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    bw = canonical_duration(cfg.baseline_window)
    k = number(cfg.outlier_k)
    expr = (
        f"{n.resources_in_window}\n"
        f"> on ({KJT})\n"
        f"({n.resources_in_window_median} + {k} * {n.resources_in_window_sigma})\n"
        f"and {n.resources_in_window} >= {number(cfg.volume_min_resources)}"
    )
    return AlertSpec(
        RESOURCE_VOLUME_HIGH,
        expr,
        "{{ $labels.job_name }} touches unusually many resources",
        "a tenant's resource volume above its rolling median band",
        f"{WHO} touched {{{{ $value | humanize }}}} resources in the last {aw}, above its "
        f"usual range (rolling median plus {k} robust deviations over the previous {bw}).",
        _KJT_LABELS,
    )


def resource_volume_low(cfg: RulesConfig) -> AlertSpec:
    """A tenant's resource volume below its rolling median band."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    bw = canonical_duration(cfg.baseline_window)
    k = number(cfg.outlier_k)
    expr = (
        f"{n.resources_in_window}\n"
        f"< on ({KJT})\n"
        f"({n.resources_in_window_median} - {k} * {n.resources_in_window_sigma})\n"
        f"and on ({KJT})\n{n.resources_in_window_median} >= {number(cfg.volume_min_resources)}\n"
        # Nothing at all from a scheduler is JobTrackResourcesZero's (or, when it stopped
        # running, JobTrackRunsBelowExpected's) to report.
        f"unless on ({KJT})\n{n.resources_in_window}{{{kinds(cfg.zero_resource_kinds)}}} == 0"
    )
    return AlertSpec(
        RESOURCE_VOLUME_LOW,
        expr,
        "{{ $labels.job_name }} touches unusually few resources",
        "a tenant's resource volume below its rolling median band",
        f"{WHO} touched {{{{ $value | humanize }}}} resources in the last {aw}, below its "
        f"usual range (rolling median minus {k} robust deviations over the previous {bw}).",
        _KJT_LABELS,
    )


def duration_drift(cfg: RulesConfig) -> AlertSpec:
    """The duration quantile over the window well above its rolling median."""
    n = Names.for_config(cfg)
    aw = canonical_duration(cfg.alert_window)
    bw = canonical_duration(cfg.baseline_window)
    q = n.duration_quantile_in_window
    expr = (
        f"{q}\n"
        f"> {number(cfg.drift_ratio)} * {n.duration_quantile_median}\n"
        f"and\n{q} - {n.duration_quantile_median} > {number(cfg.drift_min_increase_seconds)}\n"
        f"and on ({KJ})\nsum by ({KJ}) ({n.runs_in_window}) >= {number(cfg.min_runs)}"
    )
    pct = number(round(cfg.drift_quantile * 100, 3))
    return AlertSpec(
        DURATION_DRIFT,
        expr,
        "{{ $labels.job_name }} is getting slower",
        "duration quantile over the window well above its rolling median",
        f"{WHO}: p{pct} duration over the last {aw} is {{{{ $value | humanizeDuration }}}}, "
        f"over {number(cfg.drift_ratio)} times its median over the previous {bw}.",
        _KJ_LABELS,
    )


def instrumentation_errors(cfg: RulesConfig) -> AlertSpec:
    """otel-jobtrack counted problems in its own instrumentation."""
    aw = canonical_duration(cfg.alert_window)
    return AlertSpec(
        INSTRUMENTATION_ERRORS,
        _self_errors(cfg, c.INSTRUMENTATION_ERRORS, "where"),
        "otel-jobtrack had problems in {{ $labels.instance }}",
        "otel-jobtrack counted problems in its own instrumentation",
        "otel-jobtrack in {{ $labels.instance }} (scrape job {{ $labels.job }}) counted "
        f"{{{{ $value | humanize }}}} problem(s) in {{{{ $labels.where }}}} in the last {aw}. "
        "The jobs ran unaffected, but their numbers may be incomplete.",
        (),
    )


def export_errors(cfg: RulesConfig) -> AlertSpec:
    """otel-jobtrack fails to deliver to a backend."""
    aw = canonical_duration(cfg.alert_window)
    return AlertSpec(
        EXPORT_ERRORS,
        _self_errors(cfg, c.EXPORT_ERRORS, "exporter"),
        "otel-jobtrack cannot deliver metrics from {{ $labels.instance }}",
        "otel-jobtrack fails to export to a backend",
        "otel-jobtrack in {{ $labels.instance }} (scrape job {{ $labels.job }}) failed "
        f"{{{{ $value | humanize }}}} times in the last {aw} to export via "
        "{{ $labels.exporter }}; that backend is missing data.",
        (),
    )


ALERTS: Final[tuple[Callable[[RulesConfig], AlertSpec], ...]] = (
    missed_run,
    run_stuck,
    exporter_down,
    run_failures,
    runs_limited,
    resources_zero,
    runs_below_expected,
    resource_volume_high,
    resource_volume_low,
    duration_drift,
    instrumentation_errors,
    export_errors,
)
"""Every alert, in the order of the rule file."""


# ---------------------------------------------------------------------------------- rules


def alert_specs(cfg: RulesConfig) -> list[AlertSpec]:
    """Every alert's spec for ``cfg`` (disabled ones included)."""
    return [alert(cfg) for alert in ALERTS]


def dashboard_url(cfg: RulesConfig, url_labels: Sequence[str]) -> str:
    """Link to the dashboard (by ``kind``) with the variables set from the alert's labels."""
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
    for spec in alert_specs(cfg):
        if spec.name in cfg.disabled:
            continue
        rules.append(
            {
                "alert": spec.name,
                "expr": spec.expr,
                "for": canonical_duration(cfg.for_durations[spec.name]),
                "labels": {"severity": cfg.severities[spec.name]},
                "annotations": {
                    "summary": spec.summary,
                    "description": spec.description,
                    "runbook_url": f"{cfg.runbook_url}#{runbook_anchor(spec.name)}",
                    "dashboard_url": dashboard_url(cfg, spec.url_labels),
                },
            }
        )
    return rules


def alert_group(cfg: RulesConfig) -> dict[str, Any]:
    """The alert group (evaluated after the recording groups it reads)."""
    return {
        "name": ALERTS_GROUP,
        "interval": canonical_duration(cfg.interval),
        "rules": alert_rules(cfg),
    }
