"""Prometheus recording and alert rules for otel-jobtrack, generated from one settings object.

``otel-jobtrack rules`` writes ``alerts/jobtrack-rules.yaml`` (plain Prometheus rule file),
``alerts/kubernetes/prometheus-rule.yaml`` (prometheus-operator ``PrometheusRule``) and
``alerts/README.md``. The checked-in files are the output for :class:`RulesConfig` defaults;
users regenerate with their own selector, thresholds, windows and severities (flags, ``--set``
or a YAML ``--config`` file). ``docs/runbook.md`` explains every alert and the math.

The parts, each in its own module:

- :mod:`.config`: :class:`RulesConfig` (every setting) and the alert names;
- :mod:`.names`: recording-rule names (``level:metric:operations``) for any configuration;
- :mod:`.recordings`: the recording groups (breakdowns for dashboards, alert windows and
  rolling baselines);
- :mod:`.alerts`: one function per alert;
- :mod:`.files`: the files and the command line.

Shared defaults (dashboard uids, thresholds, durations) live in
:mod:`otel_jobtrack.generators.defaults`, where the dashboards read them too.
"""

from otel_jobtrack.generators.defaults import (
    CRON_DASHBOARD_UID,
    SCHEDULE_DASHBOARD_UID,
    format_duration,
    parse_duration,
)
from otel_jobtrack.generators.rules.alerts import (
    ALERTS,
    AlertSpec,
    alert_rules,
    alert_specs,
    dashboard_url,
    runbook_anchor,
)
from otel_jobtrack.generators.rules.config import (
    ALERT_NAMES,
    DEFAULT_CONFIG,
    DURATION_DRIFT,
    EXPORT_ERRORS,
    EXPORTER_DOWN,
    INSTRUMENTATION_ERRORS,
    MISSED_RUN,
    PREFIX,
    RESOURCE_VOLUME_HIGH,
    RESOURCE_VOLUME_LOW,
    RESOURCES_ZERO,
    RUN_FAILURES,
    RUN_STUCK,
    RUNS_BELOW_EXPECTED,
    RUNS_LIMITED,
    RulesConfig,
)
from otel_jobtrack.generators.rules.files import (
    KUBERNETES_FILE,
    README_FILE,
    RULES_FILE,
    all_settings,
    changed_settings,
    config_from_mapping,
    load_config,
    main,
    render,
    rule_groups,
    stale_files,
    write,
)
from otel_jobtrack.generators.rules.names import (
    DURATION_BUCKET_RATE_BY_JOB,
    DURATION_BUCKET_RATE_BY_KIND,
    DURATION_BUCKET_RATE_BY_TENANT,
    DURATION_P95_IN_WINDOW,
    DURATION_P95_MEDIAN,
    DURATION_SUM_RATE_BY_JOB,
    DURATION_SUM_RATE_BY_KIND,
    DURATION_SUM_RATE_BY_TENANT,
    EXPECTED_INTERVAL,
    GRACE,
    JOBS_PER_TARGET,
    LAST_SUCCESS,
    MAX_RUNTIME,
    OLDEST_RUN_START,
    RESOURCES_IN_WINDOW,
    RESOURCES_IN_WINDOW_MEDIAN,
    RESOURCES_IN_WINDOW_SIGMA,
    RESOURCES_RATE_BY_JOB,
    RESOURCES_RATE_BY_KIND,
    RESOURCES_RATE_BY_TENANT,
    RUNS_BY_STATE_IN_WINDOW,
    RUNS_IN_WINDOW,
    RUNS_IN_WINDOW_MEDIAN,
    RUNS_IN_WINDOW_SIGMA,
    RUNS_RATE_BY_JOB,
    RUNS_RATE_BY_KIND,
    RUNS_RATE_BY_TENANT,
    Names,
)
from otel_jobtrack.generators.rules.promql import IQR_TO_SIGMA
from otel_jobtrack.generators.rules.recordings import recording_groups

__all__ = [
    "ALERTS",
    "ALERT_NAMES",
    "CRON_DASHBOARD_UID",
    "DEFAULT_CONFIG",
    "DURATION_BUCKET_RATE_BY_JOB",
    "DURATION_BUCKET_RATE_BY_KIND",
    "DURATION_BUCKET_RATE_BY_TENANT",
    "DURATION_DRIFT",
    "DURATION_P95_IN_WINDOW",
    "DURATION_P95_MEDIAN",
    "DURATION_SUM_RATE_BY_JOB",
    "DURATION_SUM_RATE_BY_KIND",
    "DURATION_SUM_RATE_BY_TENANT",
    "EXPECTED_INTERVAL",
    "EXPORTER_DOWN",
    "EXPORT_ERRORS",
    "GRACE",
    "INSTRUMENTATION_ERRORS",
    "IQR_TO_SIGMA",
    "JOBS_PER_TARGET",
    "KUBERNETES_FILE",
    "LAST_SUCCESS",
    "MAX_RUNTIME",
    "MISSED_RUN",
    "OLDEST_RUN_START",
    "PREFIX",
    "README_FILE",
    "RESOURCES_IN_WINDOW",
    "RESOURCES_IN_WINDOW_MEDIAN",
    "RESOURCES_IN_WINDOW_SIGMA",
    "RESOURCES_RATE_BY_JOB",
    "RESOURCES_RATE_BY_KIND",
    "RESOURCES_RATE_BY_TENANT",
    "RESOURCES_ZERO",
    "RESOURCE_VOLUME_HIGH",
    "RESOURCE_VOLUME_LOW",
    "RULES_FILE",
    "RUNS_BELOW_EXPECTED",
    "RUNS_BY_STATE_IN_WINDOW",
    "RUNS_IN_WINDOW",
    "RUNS_IN_WINDOW_MEDIAN",
    "RUNS_IN_WINDOW_SIGMA",
    "RUNS_LIMITED",
    "RUNS_RATE_BY_JOB",
    "RUNS_RATE_BY_KIND",
    "RUNS_RATE_BY_TENANT",
    "RUN_FAILURES",
    "RUN_STUCK",
    "SCHEDULE_DASHBOARD_UID",
    "AlertSpec",
    "Names",
    "RulesConfig",
    "alert_rules",
    "alert_specs",
    "all_settings",
    "changed_settings",
    "config_from_mapping",
    "dashboard_url",
    "format_duration",
    "load_config",
    "main",
    "parse_duration",
    "recording_groups",
    "render",
    "rule_groups",
    "runbook_anchor",
    "stale_files",
    "write",
]
