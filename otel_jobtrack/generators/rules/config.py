"""The settings the rules (and the Alertmanager configuration for them) are generated from,
and the alert names they refer to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from otel_jobtrack._core import contract as c
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

# A stuck run and an unreachable exporter silence the missed runs they cause in Alertmanager
# (inhibitions() below), so they page in their place: critical, and no slower than the
# missed run (an inhibition works only once its source fires).
_DEFAULT_SEVERITIES: Final = {
    MISSED_RUN: "critical",
    RUN_STUCK: "critical",
    EXPORTER_DOWN: "critical",
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
    EXPORTER_DOWN: "1m",
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


TARGET_LABELS: Final = ("job", "instance")
"""Prometheus' labels of a scrape target: the scrape job and the ``host:port`` scraped."""


@dataclass(frozen=True)
class Inhibition:
    """While ``source`` fires, Alertmanager silences the ``target`` alerts that share the
    ``equal`` labels with it: one cause, one page."""

    source: str
    target: str
    equal: tuple[str, ...]
    why: str
    """One plain line for the generated README and the configuration's comments."""


def inhibitions(cfg: RulesConfig) -> list[Inhibition]:
    """The inhibitions of the Alertmanager configuration, for the alerts ``cfg`` enables.

    The labels they compare are on both alerts by construction: ``JobTrackExporterDown`` is
    per target (``target_labels``), the missed-run alert keeps the target labels of the
    job's latest run, and the stuck and missed runs share the job (and tenant) labels.
    """
    job = c.SERIES_LABELS if cfg.missed_run_per_tenant else c.JOB_LABELS
    found = [
        Inhibition(
            EXPORTER_DOWN,
            MISSED_RUN,
            cfg.target_labels,
            "an unreachable exporter silences the missed runs of the jobs it reported",
        ),
        Inhibition(
            RUN_STUCK,
            MISSED_RUN,
            job,
            "a stuck run silences the missed run of the same job"
            + (" and tenant" if cfg.missed_run_per_tenant else ""),
        ),
    ]
    return [i for i in found if i.source not in cfg.disabled and i.target not in cfg.disabled]


ALERTMANAGER_PLACEHOLDER_URL: Final = "http://replace-me.invalid/"
"""Where the example receivers post until they are replaced (``.invalid`` never resolves, so
a forgotten placeholder fails in Alertmanager's log instead of notifying anyone)."""
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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
    target_labels: tuple[str, ...] = TARGET_LABELS
    """Labels that name the scrape target a job's metrics come from (Prometheus' ``job`` and
    ``instance``; add e.g. ``cluster`` when targets are told apart by more). The exporter-down
    alert fires per target with these labels, and the missed-run alert carries those of the
    target that reported the job's latest run, so that Alertmanager can let an unreachable
    exporter silence the missed runs of its jobs."""
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
    alertmanager: bool = True
    """Also write an Alertmanager configuration for these alerts (``alertmanager/``)."""
    alertmanager_page_severities: tuple[str, ...] = ("critical",)
    """Severities routed to the paging receiver; every other alert goes to the ticket one."""
    alertmanager_page_url: str = ALERTMANAGER_PLACEHOLDER_URL + "page"
    """Webhook of the paging receiver (a placeholder: replace the receiver with your pager's
    integration, or point this at a webhook that pages)."""
    alertmanager_ticket_url: str = ALERTMANAGER_PLACEHOLDER_URL + "ticket"
    """Webhook of the ticket/chat receiver (a placeholder, like the paging one)."""
    alertmanager_group_wait: str = "30s"
    """How long a new notification group waits for more alerts (other tenants' runs, the
    cause that silences them) before its first notification."""
    alertmanager_group_interval: str = "5m"
    """How long a group waits before telling about alerts added to it, or resolved."""
    alertmanager_page_repeat_interval: str = "4h"
    """How often a page that still fires is sent again."""
    alertmanager_ticket_repeat_interval: str = "1d"
    """How often a ticket that still fires is sent again (once a day: the outlier alerts
    learn "usual" from the previous day)."""

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
        bad = [x for x in self.target_labels if not _LABEL_NAME.fullmatch(x)]
        if not self.target_labels or bad or set(self.target_labels) & set(c.RUN_LABELS):
            raise ValueError(
                f"target_labels must be label names of the scrape target, not of the "
                f"contract {c.RUN_LABELS}, got {list(self.target_labels)}"
            )
        if self.alertmanager:
            self._check_alertmanager()

    def _check_alertmanager(self) -> None:
        for name in (
            "alertmanager_group_interval",
            "alertmanager_page_repeat_interval",
            "alertmanager_ticket_repeat_interval",
        ):
            d.check_positive_duration(name, getattr(self, name))
            d.canonical_duration(getattr(self, name))
        try:
            d.canonical_duration(self.alertmanager_group_wait)
        except ValueError as exc:
            raise ValueError(f"alertmanager_group_wait: {exc}") from None
        for name in ("alertmanager_page_url", "alertmanager_ticket_url"):
            if not re.fullmatch(r"https?://\S+", getattr(self, name)):
                raise ValueError(f"{name} must be an http(s) URL, got {getattr(self, name)!r}")
        if not self.alertmanager_page_severities:
            raise ValueError("alertmanager_page_severities must name at least one severity")
        paged = set(self.alertmanager_page_severities)
        for rule in inhibitions(self):
            source, target = self.severities[rule.source], self.severities[rule.target]
            if target in paged and source not in paged:
                raise ValueError(
                    f"{rule.source} (severity {source}) would silence {rule.target} "
                    f"({target}, paged) in the Alertmanager configuration, so that one cause "
                    f"pages nobody: give {rule.source} a paged severity "
                    f"({', '.join(sorted(paged))}), or set alertmanager: false"
                )


DEFAULT_CONFIG: Final = RulesConfig()
