"""The settings the rules are generated from, and the alert names they refer to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from otel_jobtrack.generators import defaults as d
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
    lookback: str = d.LOOKBACK
    """How long a last success and a declared cadence outlive the target that exported them."""
    default_grace_seconds: float = 60.0
    """Grace for jobs that declare an interval but no ``grace=``."""
    min_runs: float = 3.0
    """Runs in the alert window below which ratios and drift are not judged (no flapping)."""
    failure_ratio: float = d.FAILURE_RATIO
    """Share of failed runs in the alert window above which ``JobTrackRunFailures`` fires."""
    limited_ratio: float = d.LIMITED_RATIO
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
            d.check_positive_duration(name, getattr(self, name))
            d.canonical_duration(getattr(self, name))  # whole seconds: they appear in names
        unknown = (set(self.severities) | set(self.for_durations) | set(self.disabled)) - set(
            ALERT_NAMES
        )
        if unknown:
            raise ValueError(f"unknown alert names {sorted(unknown)}; known: {list(ALERT_NAMES)}")
        for name in ALERT_NAMES:
            if name not in self.severities or name not in self.for_durations:
                raise ValueError(f"severities and for_durations need an entry for {name}")
            d.canonical_duration(self.for_durations[name])
        d.check_kinds("zero_resource_kinds", self.zero_resource_kinds)
        d.check_kinds("below_expected_kinds", self.below_expected_kinds)
        if not 0 < self.drift_quantile < 1:
            raise ValueError("drift_quantile must be between 0 and 1")
        d.check_selector(self.selector)


DEFAULT_CONFIG: Final = RulesConfig()
