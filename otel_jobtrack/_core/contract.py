"""The metric contract: names, labels, states and buckets shared by every exporter.

Dashboards, alerts and both exporters (Prometheus ``/metrics`` and OTLP) are built from
these constants, so the Prometheus series a user sees are the same whichever path they use.
"""

from __future__ import annotations

from typing import Final

KINDS: Final = ("cron", "schedule", "resource", "batch")
"""Where a job sits in the chain: global trigger, per-tenant scheduler, worker, batch worker."""

SUCCESS: Final = "success"
FAILURE: Final = "failure"
LIMITED: Final = "limited"
STATES: Final = (SUCCESS, FAILURE, LIMITED)

SYSTEM_TENANT: Final = "system"
"""Tenant label value of a job that belongs to no tenant."""

UNKNOWN_TENANT: Final = "unknown"
"""Tenant label value used when a tenant value cannot be turned into text at all."""

RUN_LABELS: Final = ("kind", "job_name", "tenant", "state")
SERIES_LABELS: Final = ("kind", "job_name", "tenant")
JOB_LABELS: Final = ("kind", "job_name")

# Prometheus names (what a query sees on both paths).
RUNS_TOTAL: Final = "jobtrack_runs_total"
RUN_DURATION: Final = "jobtrack_run_duration_seconds"
RESOURCES_TOTAL: Final = "jobtrack_resources_total"
LAST_RUN_TIMESTAMP: Final = "jobtrack_last_run_timestamp_seconds"
RUNS_IN_PROGRESS: Final = "jobtrack_runs_in_progress"
OLDEST_RUN_START: Final = "jobtrack_oldest_run_start_timestamp_seconds"
EXPECTED_INTERVAL: Final = "jobtrack_job_expected_interval_seconds"
GRACE: Final = "jobtrack_job_grace_seconds"
MAX_RUNTIME: Final = "jobtrack_job_max_runtime_seconds"
INSTRUMENTATION_ERRORS: Final = "jobtrack_instrumentation_errors_total"
EXPORT_ERRORS: Final = "jobtrack_export_errors_total"
OVERFLOW_RUNS: Final = "jobtrack_overflow_runs_total"
KILLED_RUNS: Final = "jobtrack_killed_runs_total"
"""Multiprocess mode: runs whose process died while they were in progress (each also counted
in ``jobtrack_runs_total{state="failure"}``), labelled like ``jobtrack_runs_in_progress``."""

DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
)
"""Upper bounds (seconds) of the duration histogram: 5 ms to 1 h, then +Inf."""

HELP: Final = {
    RUNS_TOTAL: "Finished job runs by final state.",
    RUN_DURATION: "Wall duration of finished job runs (monotonic clock).",
    RESOURCES_TOTAL: "Resources (tenants, records, batches) a job run touched.",
    LAST_RUN_TIMESTAMP: "Unix time at which the last run in this state ended.",
    RUNS_IN_PROGRESS: "Runs started and not yet finished.",
    OLDEST_RUN_START: "Unix start time of the oldest run still in progress.",
    EXPECTED_INTERVAL: "Longest expected gap between two runs, as declared in code.",
    GRACE: "Extra time allowed past the expected interval before a run counts as missed.",
    MAX_RUNTIME: "Longest a single run may take before it counts as stuck.",
    INSTRUMENTATION_ERRORS: "Problems inside otel-jobtrack itself; the jobs were not affected.",
    EXPORT_ERRORS: "Failed attempts to deliver metrics to a backend.",
    OVERFLOW_RUNS: "Runs counted under __overflow__ because a cardinality limit was reached.",
    KILLED_RUNS: "Runs whose process died while they were in progress; also counted as failures.",
}
