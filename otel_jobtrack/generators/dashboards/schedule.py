"""The schedule dashboard (the per-tenant side: schedulers, resource and batch jobs): one
function per row and per panel."""

from __future__ import annotations

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.dashboards.config import (
    COUNT,
    CRON_UID,
    PER_RUN,
    Q_CADENCE,
    Q_DURATION,
    Q_FAILURES,
    Q_VOLUME,
    Q_ZERO,
    RATIO,
    RESOURCES_PER_MIN,
    RUNS_PER_MIN,
    SCHEDULE_UID,
    SECONDS,
    TIMES,
    DashboardsConfig,
)
from otel_jobtrack.generators.dashboards.queries import Queries, per_min, state_matcher
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
    volume_steps,
)
from otel_jobtrack.generators.defaults import number

KJ = "kind, job_name"
KJT = "kind, job_name, tenant"
KT = "kind, tenant"
SYSTEM = f'tenant="{c.SYSTEM_TENANT}"'
TENANT_JOBS = f'tenant!="{c.SYSTEM_TENANT}"'

# ---------------------------------------------------------------------------------- overview


def runs_per_minute(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "How many runs per minute?",
        Q_CADENCE,
        "Runs per minute of the selected jobs and tenants, all states.",
        RUNS_PER_MIN,
        (Target(per_min(q.runs("")), "runs/min", instant=True),),
        width=4,
    )


def overdue_pairs(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "How many job/tenant pairs missed their cadence?",
        Q_CADENCE,
        "Job and tenant pairs whose last success is older than the declared interval "
        "plus grace (what the missed-run alert checks), remembered for the configured "
        "lookback even after the process died. Jobs without a declared cadence are "
        "not counted.",
        COUNT,
        (Target(f"count({q.overdue_share(KJT)} >= 1)", "overdue", instant=True),),
        width=4,
        thresholds=ONE_OR_MORE,
        no_value="0",
    )


def failed_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of runs failed?",
        Q_FAILURES,
        "Failed runs / all runs over the rate interval.",
        RATIO,
        (Target(q.state_ratio(c.FAILURE, ""), "failed", instant=True),),
        width=4,
        thresholds=failure_steps(q.cfg),
    )


def limited_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of runs hit a concurrency limit?",
        Q_FAILURES,
        "Limited runs (the tenant's lock was held by another run) / all runs.",
        RATIO,
        (Target(q.state_ratio(c.LIMITED, ""), "limited", instant=True),),
        width=4,
        thresholds=limited_steps(q.cfg),
    )


def runs_in_progress(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "How many runs are in progress?",
        Q_CADENCE,
        "Runs started and not finished yet (jobtrack_runs_in_progress).",
        COUNT,
        (Target(q.in_progress(""), "in progress", instant=True),),
        width=4,
    )


def oldest_run(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "How long has the oldest running run been going?",
        Q_CADENCE,
        "Age of the oldest run still in progress. A run that never ends blocks its "
        "tenant's lock, so later runs end limited or never start.",
        SECONDS,
        (Target(q.oldest_age(""), "oldest run", instant=True),),
        width=4,
        thresholds=long_run_steps(q.cfg),
        no_value="nothing running",
    )


def overview_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Overview",
        (
            runs_per_minute(q),
            overdue_pairs(q),
            failed_share(q),
            limited_share(q),
            runs_in_progress(q),
            oldest_run(q),
        ),
    )


# ---------------------------------------------------------------------------------- cadence


def runs_by_state(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How often did each job run, and how did its runs end?",
        Q_CADENCE,
        "Runs per minute per job and final state, all selected tenants together.",
        RUNS_PER_MIN,
        (Target(per_min(q.runs("kind, job_name, state")), "{{job_name}} {{state}}"),),
        stacked=True,
    )


def runs_per_declared_interval(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Did each job run once per declared interval, for each tenant?",
        Q_CADENCE,
        "Runs per declared interval per job and tenant: 1 means exactly as declared, "
        "below 1 the tenant's scheduler ran less often than declared.",
        COUNT,
        (Target(q.runs_per_interval(KJT), "{{job_name}} / {{tenant}}"),),
        thresholds=AT_LEAST_ONE,
    )


def since_success_table(q: Queries) -> PanelSpec:
    overdue = overdue_steps(q.cfg)
    return PanelSpec(
        "table",
        "How long since each job last succeeded, for each tenant?",
        Q_CADENCE,
        "Time since the last success per job and tenant, and the share of the declared "
        "interval plus grace it has used (100%: missed; empty where no cadence is "
        "declared).",
        SECONDS,
        (
            Target(q.since_success(KJT), column="since success", unit=SECONDS),
            Target(
                q.overdue_share(KJT),
                column="of allowed gap",
                unit=RATIO,
                thresholds=overdue,
            ),
        ),
        width=24,
        thresholds=overdue,
    )


def cadence_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Did each job run as often as expected, for every tenant?",
        (runs_by_state(q), runs_per_declared_interval(q), since_success_table(q)),
    )


# ---------------------------------------------------------------------------------- resources


def resources_per_minute(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How many resources did each job touch per minute?",
        Q_ZERO,
        "Resources (records, batches, work items) touched per minute per job. A job "
        "whose line sits at zero runs but finds nothing to do.",
        RESOURCES_PER_MIN,
        (Target(per_min(q.resources(KJ)), "{{job_name}}"),),
    )


def zero_resource_pairs(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which jobs ran for a tenant but touched zero resources?",
        Q_ZERO,
        "Successful runs per minute of job and tenant pairs that succeeded in the window "
        "and touched no resource at all. Empty when every run found work.",
        RUNS_PER_MIN,
        (Target(per_min(q.zero_resource_runs(KJT)), "{{job_name}} / {{tenant}}"),),
    )


def resources_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Did the schedulers find work?", (resources_per_minute(q), zero_resource_pairs(q))
    )


# ---------------------------------------------------------------------------------- per tenant


def system_and_tenant_runs(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Do system jobs and tenant jobs both run?",
        Q_CADENCE,
        f'Runs per minute of jobs without a tenant (tenant "{c.SYSTEM_TENANT}") next '
        "to runs of tenant jobs.",
        RUNS_PER_MIN,
        (
            Target(per_min(q.runs("", SYSTEM)), "system jobs"),
            Target(per_min(q.runs("", TENANT_JOBS)), "tenant jobs"),
        ),
        width=8,
    )


def system_and_tenant_resources(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Do system jobs or tenant jobs touch the resources?",
        Q_VOLUME,
        "Resources per minute touched by system jobs and by tenant jobs.",
        RESOURCES_PER_MIN,
        (
            Target(per_min(f"sum ({q.rate(c.RESOURCES_TOTAL, SYSTEM)})"), "system jobs"),
            Target(per_min(f"sum ({q.rate(c.RESOURCES_TOTAL, TENANT_JOBS)})"), "tenant jobs"),
        ),
        width=8,
    )


def resources_per_tenant(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How many resources does each tenant enqueue per minute?",
        Q_VOLUME,
        "Resources per minute per tenant, all selected jobs. One line far above its "
        "own past is a tenant enqueueing more than usual.",
        RESOURCES_PER_MIN,
        (Target(per_min(q.resources(KT)), "{{tenant}} ({{kind}})"),),
        width=8,
    )


def unusual_volume_table(q: Queries) -> PanelSpec:
    volume = volume_steps(q.cfg)
    now = q.resources(KJT)
    return PanelSpec(
        "table",
        "Which tenants enqueue far more than usual?",
        Q_VOLUME,
        "Per job and tenant: resources per minute now, that rate against the tenant's "
        "own average over the dashboard range, and against the median tenant of the "
        "same job. Red from the configured ratio up.",
        RESOURCES_PER_MIN,
        (
            Target(per_min(now), column="resources/min", unit=RESOURCES_PER_MIN),
            Target(
                f"{now} / (avg_over_time(({now})[$__range:$__interval]) > 0)",
                column="x own average",
                unit=TIMES,
                thresholds=volume,
            ),
            Target(
                f"{now} / on (kind, job_name) group_left () "
                f"(quantile by (kind, job_name) (0.5, {now}) > 0)",
                column="x median tenant",
                unit=TIMES,
                thresholds=volume,
            ),
        ),
        width=24,
        height=9,
        thresholds=volume,
    )


def per_tenant_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Per tenant: system jobs next to tenant jobs",
        (
            system_and_tenant_runs(q),
            system_and_tenant_resources(q),
            resources_per_tenant(q),
            unusual_volume_table(q),
        ),
    )


# ---------------------------------------------------------------------------------- failures


def tenants_failing_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of tenants with runs had failures?",
        Q_FAILURES,
        "Tenants with at least one failed run / tenants with runs. Low: isolated to a "
        "few tenants (their data, their credentials). Near 100%: global (the code, a "
        "shared dependency).",
        RATIO,
        (Target(q.active_share("tenant", c.FAILURE), "tenants failing", instant=True),),
        width=6,
        thresholds=SPREAD_STEPS,
    )


def jobs_failing_share(q: Queries) -> PanelSpec:
    return PanelSpec(
        "stat",
        "What share of jobs with runs had failures?",
        Q_FAILURES,
        "Jobs with at least one failed run / jobs with runs. One scheduler failing "
        "for every tenant points at that scheduler; every job failing points at the "
        "platform.",
        RATIO,
        (Target(q.active_share(KJ, c.FAILURE), "jobs failing", instant=True),),
        width=6,
        thresholds=SPREAD_STEPS,
    )


def failing_or_limited_jobs(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which jobs fail or are limited, and how often?",
        Q_FAILURES,
        "Share of each job's runs that failed or were limited.",
        RATIO,
        (
            Target(q.state_ratio(c.FAILURE, KJ), "{{job_name}} failure"),
            Target(q.state_ratio(c.LIMITED, KJ), "{{job_name}} limited"),
        ),
        width=12,
        thresholds=failure_steps(q.cfg),
    )


def failing_tenants(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which tenants fail, and how often?",
        Q_FAILURES,
        "Failed runs per minute per tenant and job. One tenant alone: isolated; the "
        "same job for every tenant: that job is broken.",
        RUNS_PER_MIN,
        (Target(per_min(q.runs(KJT, state_matcher(c.FAILURE))), "{{tenant}} {{job_name}}"),),
    )


def limited_tenants(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which tenants are held back by concurrency limits?",
        Q_FAILURES,
        "Limited runs per minute per tenant and job: the tenant's lock was still held, "
        "usually by a slow or stuck earlier run.",
        RUNS_PER_MIN,
        (Target(per_min(q.runs(KJT, state_matcher(c.LIMITED))), "{{tenant}} {{job_name}}"),),
    )


def failures_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Are failures isolated or global?",
        (
            tenants_failing_share(q),
            jobs_failing_share(q),
            failing_or_limited_jobs(q),
            failing_tenants(q),
            limited_tenants(q),
        ),
    )


# ---------------------------------------------------------------------------------- duration


def job_duration(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How long do each job's runs take?",
        Q_DURATION,
        "Duration quantiles per job from jobtrack_run_duration_seconds.",
        SECONDS,
        tuple(
            Target(q.quantile(x, KJ), f"{{{{job_name}}}} p{number(x * 100)}")
            for x in q.cfg.quantiles
        ),
        width=8,
    )


def resources_per_run(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Is each run doing more work? (resources per run)",
        Q_DURATION,
        "Resources touched per run per job. Rising together with duration: the job got more work.",
        PER_RUN,
        (Target(q.per_run(q.resources(KJ), KJ), "{{job_name}}"),),
        width=8,
    )


def seconds_per_resource(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Is each resource taking longer? (seconds per resource)",
        Q_DURATION,
        "Run time per resource touched, per job. Rising while resources per run stay "
        "flat: the work itself got slower.",
        SECONDS,
        (Target(f"{q.duration_sum(KJ)} / ({q.resources(KJ)} > 0)", "{{job_name}}"),),
        width=8,
    )


def slowest_tenants(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "Which tenants' runs take longest?",
        Q_DURATION,
        "p95 duration per tenant (all selected jobs): one slow tenant is usually one "
        "big tenant; check its resources per minute above.",
        SECONDS,
        (Target(q.quantile(0.95, KT), "{{tenant}} ({{kind}})"),),
        width=24,
    )


def duration_row(q: Queries) -> RowSpec:
    return RowSpec(
        "Is duration growing because of more work, or because it got slower?",
        (job_duration(q), resources_per_run(q), seconds_per_resource(q), slowest_tenants(q)),
    )


# ---------------------------------------------------------------------------------- in progress


def in_progress_per_job(q: Queries) -> PanelSpec:
    return PanelSpec(
        "timeseries",
        "How many runs are in progress, per job?",
        Q_CADENCE,
        "Runs started and not yet finished per job. A count that only grows means runs "
        "hang; a job stuck at 1 keeps its tenant locked.",
        COUNT,
        (Target(q.in_progress(KJ), "{{job_name}}"),),
    )


def longest_runs_table(q: Queries) -> PanelSpec:
    long_run = long_run_steps(q.cfg)
    return PanelSpec(
        "table",
        "Which runs have been going the longest?",
        Q_CADENCE,
        "Per job and tenant: age of the oldest run in progress, and that age as a share "
        "of the declared max_runtime (100%: the stuck-run alert's limit). Empty when "
        "nothing is running.",
        SECONDS,
        (
            Target(
                q.oldest_age(KJT),
                column="oldest run age",
                unit=SECONDS,
                thresholds=long_run,
            ),
            Target(
                f"({q.oldest_age(KJT)}) / on (kind, job_name) group_left () "
                f"{q.job_gauge(c.MAX_RUNTIME)}",
                column="of max_runtime",
                unit=RATIO,
                thresholds=overdue_steps(q.cfg),
            ),
        ),
        thresholds=long_run,
    )


def in_progress_row(q: Queries) -> RowSpec:
    return RowSpec("Runs in progress", (in_progress_per_job(q), longest_runs_table(q)))


# ---------------------------------------------------------------------------------- breakdown


def per_job_table(q: Queries) -> PanelSpec:
    return PanelSpec(
        "table",
        "How is each job doing right now?",
        Q_CADENCE,
        "One row per job over the latest rate interval: runs per minute, failure and "
        "limited shares, resources per minute and per run, p95 duration.",
        COUNT,
        (
            Target(per_min(q.runs(KJ)), column="runs/min", unit=RUNS_PER_MIN),
            *share_columns(q, KJ),
            Target(per_min(q.resources(KJ)), column="resources/min", unit=RESOURCES_PER_MIN),
            Target(q.per_run(q.resources(KJ), KJ), column="resources/run", unit=PER_RUN),
            Target(q.quantile(0.95, KJ), column="p95 duration", unit=SECONDS),
        ),
        width=24,
        height=9,
    )


def per_tenant_table(q: Queries) -> PanelSpec:
    return PanelSpec(
        "table",
        "How is each tenant doing right now?",
        Q_FAILURES,
        "One row per tenant and kind: runs per minute, failure and limited shares, "
        "resources per minute and time since its last success (any job).",
        COUNT,
        (
            Target(per_min(q.runs(KT)), column="runs/min", unit=RUNS_PER_MIN),
            *share_columns(q, KT),
            Target(per_min(q.resources(KT)), column="resources/min", unit=RESOURCES_PER_MIN),
            Target(q.since_success(KT), column="since success", unit=SECONDS),
        ),
        width=24,
        height=9,
    )


def breakdown_row(q: Queries) -> RowSpec:
    return RowSpec("Per-job and per-tenant breakdown", (per_job_table(q), per_tenant_table(q)))


# ---------------------------------------------------------------------------------- board


def schedule_board(cfg: DashboardsConfig) -> BoardSpec:
    """Per job and per tenant: cadence, work found, tenants, failures, duration, in progress."""
    q = Queries(cfg)
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
        rows=(
            overview_row(q),
            cadence_row(q),
            resources_row(q),
            per_tenant_row(q),
            failures_row(q),
            duration_row(q),
            in_progress_row(q),
            breakdown_row(q),
        ),
        link_uid=CRON_UID,
        link_title="Cron triggers",
    )
