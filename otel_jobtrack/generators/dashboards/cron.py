"""The cron dashboard (global triggers): one function per row and per panel."""

from __future__ import annotations

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.dashboards.config import (
    COUNT,
    CRON_UID,
    PER_RUN,
    Q_CADENCE,
    Q_DURATION,
    Q_FAILURES,
    Q_TENANTS,
    Q_ZERO,
    RATIO,
    RUNS_PER_MIN,
    SCHEDULE_UID,
    SECONDS,
    TENANTS_PER_MIN,
    DashboardsConfig,
)
from otel_jobtrack.generators.dashboards.queries import Queries, per_min
from otel_jobtrack.generators.dashboards.specs import (
    AT_LEAST_ONE,
    ONE_OR_MORE,
    SPREAD_STEPS,
    BoardSpec,
    PanelSpec,
    RowSpec,
    Target,
    failure_steps,
    limited_steps,
    long_run_steps,
    overdue_steps,
    share_columns,
)
from otel_jobtrack.generators.defaults import number

KJ = "kind, job_name"

# ---------------------------------------------------------------------------------- cadence


def overdue_triggers(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "How many triggers missed their declared cadence?",
        Q_CADENCE,
        "Triggers whose last success is older than the interval plus grace they declare "
        "in code (every=/cron=, grace=): what the missed-run alert checks. 0 when all "
        "are on time. Last successes are remembered for the configured lookback, so a "
        "trigger whose process died still counts; jobs that declare no cadence or never "
        "succeeded are not counted.",
        COUNT,
        (Target(f"count({q.overdue_share(KJ)} >= 1)", "overdue", instant=True),),
        width=6,
        thresholds=ONE_OR_MORE,
        no_value="0",
    )


def allowed_gap_used(q: Queries) -> PanelSpec:
    return PanelSpec(
        "bargauge",
        "How much of its allowed gap has each trigger used since its last success?",
        Q_CADENCE,
        "Time since the last successful run divided by the declared interval plus "
        "grace. Below 100% the trigger is on time; at 100% it has missed a run.",
        RATIO,
        (Target(q.overdue_share(KJ), "{{job_name}}", instant=True),),
        width=18,
        thresholds=overdue_steps(q.cfg),
        max=1.0,
    )


def runs_per_declared_interval(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Did each trigger run once per declared interval?",
        Q_CADENCE,
        "Runs per declared interval (run rate x jobtrack_job_expected_interval_seconds): "
        "1 means it ran exactly as often as declared, below 1 it ran less often "
        "(skipped ticks, a dead scheduler), above 1 more often (duplicate schedulers).",
        COUNT,
        (Target(q.runs_per_interval(KJ), "{{job_name}}"),),
        thresholds=AT_LEAST_ONE,
    )


def runs_by_state(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How often did each trigger run, and how did its runs end?",
        Q_CADENCE,
        "Runs per minute per trigger and final state (success, failure, limited = "
        "refused by a concurrency limit). A gap means the trigger did not run at all.",
        RUNS_PER_MIN,
        (Target(per_min(q.runs("kind, job_name, state")), "{{job_name}} {{state}}"),),
        stacked=True,
    )


def cadence_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Did the triggers run as often as expected?",
        (
            overdue_triggers(q),
            allowed_gap_used(q),
            runs_per_declared_interval(q),
            runs_by_state(q),
        ),
    )


# ---------------------------------------------------------------------------------- tenants


def tenants_per_run(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How many tenants did each trigger run schedule?",
        Q_TENANTS,
        "Resources (tenants scheduled) per run, per trigger: "
        "rate(jobtrack_resources_total) / rate(jobtrack_runs_total). A drop to zero "
        "means the trigger runs but finds no tenant to schedule.",
        PER_RUN,
        (Target(q.per_run(q.resources(KJ), KJ), "{{job_name}}"),),
        width=8,
    )


def tenants_per_minute(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How many tenants did each trigger schedule per minute?",
        Q_TENANTS,
        "Tenants (resources) scheduled per minute per trigger: the total amount of work "
        "the global triggers hand to the per-tenant schedulers.",
        TENANTS_PER_MIN,
        (Target(per_min(q.resources(KJ)), "{{job_name}}"),),
        width=8,
    )


def triggers_without_tenants(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which triggers ran but scheduled no tenants?",
        Q_ZERO,
        "Successful runs per minute of triggers that succeeded in the window and touched "
        "zero resources (what the zero-resource alert checks). Empty when every "
        "trigger that ran scheduled at least one tenant.",
        RUNS_PER_MIN,
        (Target(per_min(q.zero_resource_runs(KJ)), "{{job_name}}"),),
        width=8,
    )


def tenants_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Did the triggers find any tenants?",
        (tenants_per_run(q), tenants_per_minute(q), triggers_without_tenants(q)),
    )


# ---------------------------------------------------------------------------------- duration


def trigger_duration(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Is each trigger's duration growing?",
        Q_DURATION,
        "Duration quantiles per trigger from jobtrack_run_duration_seconds. Compare "
        "with the seconds per tenant next to it to tell more work from slower work.",
        SECONDS,
        tuple(
            Target(q.quantile(x, KJ), f"{{{{job_name}}}} p{number(x * 100)}")
            for x in q.cfg.quantiles
        ),
        width=8,
    )


def seconds_per_tenant(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Is a trigger slower, or scheduling more tenants? (seconds per tenant)",
        Q_DURATION,
        "Run time spent per tenant scheduled. Flat while duration grows: more tenants "
        "(more work). Growing: each tenant takes longer (slower work).",
        SECONDS,
        (Target(f"{q.duration_sum(KJ)} / ({q.resources(KJ)} > 0)", "{{job_name}}"),),
        width=8,
    )


def stuck_trigger(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Is a trigger run stuck? (age of the oldest run in progress)",
        Q_CADENCE,
        "Age of the oldest run still in progress per trigger, next to its declared "
        "max_runtime (dashed). A stuck run blocks the next ones behind its lock. "
        "Empty when nothing is running.",
        SECONDS,
        (
            Target(q.oldest_age(KJ), "{{job_name}} oldest run"),
            Target(q.job_gauge(c.MAX_RUNTIME), "{{job_name}} max_runtime"),
        ),
        width=8,
        thresholds=long_run_steps(q.cfg),
    )


def duration_row(q: Queries) -> RowSpec:
    return RowSpec(
        "How long do trigger runs take?",
        (trigger_duration(q), seconds_per_tenant(q), stuck_trigger(q)),
    )


# ---------------------------------------------------------------------------------- failures


def failed_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of trigger runs failed?",
        Q_FAILURES,
        "Failed runs / all runs of the selected triggers, over the rate interval.",
        RATIO,
        (Target(q.state_ratio(c.FAILURE, ""), "failed", instant=True),),
        width=6,
        thresholds=failure_steps(q.cfg),
    )


def limited_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of trigger runs hit a concurrency limit?",
        Q_FAILURES,
        "Limited runs (refused because another run held the lock) / all runs.",
        RATIO,
        (Target(q.state_ratio(c.LIMITED, ""), "limited", instant=True),),
        width=6,
        thresholds=limited_steps(q.cfg),
    )


def failing_triggers_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of running triggers are failing?",
        Q_FAILURES,
        "Triggers with at least one failed run / triggers with runs. Near 0%: one "
        "trigger is failing (isolated); near 100%: they all fail (global: a shared "
        "database, broker or deploy).",
        RATIO,
        (Target(q.active_share(KJ, c.FAILURE), "failing triggers", instant=True),),
        width=12,
        thresholds=SPREAD_STEPS,
    )


def failing_or_limited_triggers(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which triggers fail or are limited, and how often?",
        Q_FAILURES,
        "Share of each trigger's runs that failed or were limited. One line up: an "
        "isolated problem; all lines up together: a global one.",
        RATIO,
        (
            Target(q.state_ratio(c.FAILURE, KJ), "{{job_name}} failure"),
            Target(q.state_ratio(c.LIMITED, KJ), "{{job_name}} limited"),
        ),
        width=24,
        thresholds=failure_steps(q.cfg),
    )


def failures_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Are trigger failures isolated or global?",
        (
            failed_share(q),
            limited_share(q),
            failing_triggers_share(q),
            failing_or_limited_triggers(q),
        ),
    )


# ---------------------------------------------------------------------------------- breakdown


def per_trigger_table(q: Queries) -> PanelSpec:
    return PanelSpec(
        "table",
        "How is each trigger doing right now?",
        Q_CADENCE,
        "One row per trigger over the latest rate interval: runs per minute, runs per "
        "declared interval, tenants per run, failure and limited shares, p95 duration "
        "and time since the last success.",
        COUNT,
        (
            Target(per_min(q.runs(KJ)), column="runs/min", unit=RUNS_PER_MIN),
            Target(q.runs_per_interval(KJ), column="runs per interval", unit=COUNT),
            Target(q.per_run(q.resources(KJ), KJ), column="tenants/run", unit=PER_RUN),
            *share_columns(q, KJ),
            Target(q.quantile(0.95, KJ), column="p95 duration", unit=SECONDS),
            Target(q.since_success(KJ), column="since success", unit=SECONDS),
        ),
        width=24,
        height=9,
    )


def breakdown_row(q: Queries) -> RowSpec:
    return RowSpec("Per-trigger breakdown", (per_trigger_table(q),))


# ---------------------------------------------------------------------------------- board


def cron_board(cfg: DashboardsConfig) -> BoardSpec:
    """Global cron triggers: cadence, tenants scheduled, duration, failures, per trigger."""
    q = Queries(cfg)
    return BoardSpec(
        uid=CRON_UID,
        title=f"{cfg.title_prefix} / Cron triggers",
        summary=(
            "Global cron triggers: are they running, how often against the cadence declared "
            "in code, how long they take, how many tenants each run scheduled, and how runs "
            "end (success, failure, limited), per trigger."
        ),
        kinds=cfg.cron_kinds,
        rows=(cadence_row(q), tenants_row(q), duration_row(q), failures_row(q), breakdown_row(q)),
        link_uid=SCHEDULE_UID,
        link_title="Schedule jobs (per tenant)",
    )
