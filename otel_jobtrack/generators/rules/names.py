"""Recording-rule names (``level:metric:operations``): constants for the defaults, and
:class:`Names` for any configuration (the windows appear in the names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from otel_jobtrack.generators.defaults import canonical_duration, number
from otel_jobtrack.generators.rules.config import RulesConfig

# Recording-rule names under the default settings. Dashboards and tools reference these; a test
# checks they match what the default settings generate.
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
LAST_RUN_TARGET: Final = "kind_job_name_tenant:jobtrack_last_run_timestamp_seconds:latest_target"
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
    last_run_target: str
    """Per job and tenant, the last run's time, labelled with the target that reported it."""
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
        rate = "rate" + canonical_duration(cfg.rate_window)
        inc = "increase" + canonical_duration(cfg.alert_window)
        base = "median" + canonical_duration(cfg.baseline_window)
        sigma = "sigma" + canonical_duration(cfg.baseline_window)
        pct = f"p{number(round(cfg.drift_quantile * 100, 3))}".replace(".", "_")
        quantile = f"{pct}_{canonical_duration(cfg.alert_window)}"
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
            last_run_target=(
                "kind_job_name_tenant:jobtrack_last_run_timestamp_seconds:latest_target"
            ),
            expected_interval="kind_job_name:jobtrack_job_expected_interval_seconds:max",
            grace="kind_job_name:jobtrack_job_grace_seconds:max",
            max_runtime="kind_job_name:jobtrack_job_max_runtime_seconds:max",
            oldest_run_start="kind_job_name_tenant:jobtrack_oldest_run_start_timestamp_seconds:min",
            jobs_per_target=f"{'_'.join(cfg.target_labels)}:jobtrack_jobs:count",
            runs_in_window_median=f"kind_job_name_tenant:{runs}:{inc}_{base}",
            runs_in_window_sigma=f"kind_job_name_tenant:{runs}:{inc}_{sigma}",
            resources_in_window_median=f"kind_job_name_tenant:{res}:{inc}_{base}",
            resources_in_window_sigma=f"kind_job_name_tenant:{res}:{inc}_{sigma}",
            duration_quantile_median=f"kind_job_name:{dur}:{quantile}_{base}",
        )
