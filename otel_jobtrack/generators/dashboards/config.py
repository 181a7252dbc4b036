"""The settings the dashboards are generated from, and the conventions every panel follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from otel_jobtrack.generators import defaults as d

CRON_UID: Final = d.CRON_DASHBOARD_UID
SCHEDULE_UID: Final = d.SCHEDULE_DASHBOARD_UID
CRON_FILE: Final = f"{CRON_UID}.json"
SCHEDULE_FILE: Final = f"{SCHEDULE_UID}.json"
README_FILE: Final = "README.md"

DS_INPUT: Final = "DS_PROMETHEUS"
"""Import input Grafana asks for (``__inputs``); its ``${DS_PROMETHEUS}`` is replaced on import."""
DS_VARIABLE: Final = "datasource"
DS_REF_UID: Final = "${" + DS_VARIABLE + "}"
RATE_INTERVAL: Final = "$__rate_interval"
VARIABLES: Final = ("kind", "job_name", "tenant")
"""Label variables on both boards; alert ``dashboard_url`` annotations set them (``var-kind=``)."""
GRAFANA_VERSION: Final = "11.6.0"

# The questions every panel answers (after the background article's list).
Q_CADENCE: Final = "Did it run as often as expected?"
Q_TENANTS: Final = "Did it find any tenants?"
Q_ZERO: Final = "Did it run but touch zero resources?"
Q_VOLUME: Final = "Did one tenant enqueue far more than usual?"
Q_FAILURES: Final = "Are failures isolated or global?"
Q_DURATION: Final = "Is duration growing because of more work, or because it got slower?"
QUESTIONS: Final = (Q_CADENCE, Q_TENANTS, Q_ZERO, Q_VOLUME, Q_FAILURES, Q_DURATION)

# Units (Grafana unit ids; ``suffix:`` is Grafana's custom-unit syntax).
RUNS_PER_MIN: Final = "suffix:runs/min"
RESOURCES_PER_MIN: Final = "suffix:resources/min"
TENANTS_PER_MIN: Final = "suffix:tenants/min"
PER_RUN: Final = "suffix:per run"
RATIO: Final = "percentunit"
SECONDS: Final = "s"
COUNT: Final = "short"
TIMES: Final = "suffix:x"


@dataclass(frozen=True)
class DashboardsConfig:
    """Every setting the dashboards are generated from; the defaults produce the shipped files."""

    selector: str = ""
    """Extra label matchers added to every ``jobtrack_*`` selector, e.g. ``job="billing"``."""
    datasource: str = "${" + DS_INPUT + "}"
    """What the ``datasource`` variable selects at first: ``${DS_PROMETHEUS}`` (asked on import;
    elsewhere Grafana falls back to the default data source), a data source name or uid, or
    ``default``."""
    datasource_regex: str = ""
    """Regex limiting the data sources the ``datasource`` variable offers (e.g. ``/prom|vm/``)."""
    cron_kinds: tuple[str, ...] = ("cron",)
    """Kinds shown on the cron dashboard (its ``kind`` variable offers only these)."""
    schedule_kinds: tuple[str, ...] = ("schedule", "resource", "batch")
    """Kinds shown on the schedule dashboard."""
    title_prefix: str = "otel-jobtrack"
    tags: tuple[str, ...] = ("otel-jobtrack",)
    time_from: str = "now-6h"
    """Default time range start (the range ends at ``now``)."""
    refresh: str = "1m"
    """Auto-refresh interval (empty: off)."""
    overdue_warn: float = 0.8
    """Share of (interval + grace) since the last success at which a job turns orange (1 = red:
    the point at which the missed-run alert considers it missed)."""
    failure_ratio: float = d.FAILURE_RATIO
    """Share of failed runs shown red (the rules' ``failure_ratio`` default)."""
    limited_ratio: float = d.LIMITED_RATIO
    """Share of limited runs shown red (the rules' ``limited_ratio`` default)."""
    volume_ratio: float = 3.0
    """A tenant's resource volume this many times its usual (or its peers') is shown red."""
    long_run_seconds: float = 600.0
    """Age of a run still in progress shown red (orange at half); a job's declared max_runtime
    is drawn or compared next to it where it has one."""
    quantiles: tuple[float, ...] = (0.5, 0.95)
    """Duration quantiles drawn (from the run duration histogram)."""
    lookback: str = d.LOOKBACK
    """How long a last success and a declared cadence outlive the process that exported them
    (a dead scheduler's series go stale; it must still count as overdue)."""

    def __post_init__(self) -> None:
        d.check_selector(self.selector)
        d.check_kinds("cron_kinds", self.cron_kinds)
        d.check_kinds("schedule_kinds", self.schedule_kinds)
        if not self.quantiles or not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be between 0 and 1")
        d.check_positive_duration("lookback", self.lookback)
        if not self.datasource:
            raise ValueError("datasource must not be empty (use 'default' for Grafana's default)")


DEFAULT_CONFIG: Final = DashboardsConfig()
