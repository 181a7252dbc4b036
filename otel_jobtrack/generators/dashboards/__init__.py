"""Grafana dashboards for otel-jobtrack, generated with grafana-foundation-sdk from one config.

``otel-jobtrack dashboards`` writes ``dashboards/jobtrack-cron.json`` (the global triggers),
``dashboards/jobtrack-schedule.json`` (the per-tenant side: schedulers, resource and batch jobs)
and ``dashboards/README.md``. The checked-in files are the output for :class:`DashboardsConfig`
defaults; a test fails when they are stale. ``docs/dashboards.md`` explains import and every row.

Every panel answers one of :data:`QUESTIONS` in its title and description, queries the raw
``jobtrack_*`` series (so the same JSON works on Prometheus and on VictoriaMetrics, which does
not evaluate recording rules) with ``$__rate_interval`` in every rate, and goes through the
``datasource`` template variable. :func:`lint` checks those conventions.

The parts, each in its own module:

- :mod:`.config`: :class:`DashboardsConfig` (every setting), units and the questions;
- :mod:`.queries`: the PromQL every panel is built from;
- :mod:`.specs`: boards, rows, panels and targets as plain data, and their colour steps;
- :mod:`.cron` and :mod:`.schedule`: one function per row and per panel of each board;
- :mod:`.grafana`: the Grafana JSON (grafana-foundation-sdk builders);
- :mod:`.lint`, :mod:`.settings`, :mod:`.files`: the checks, the settings as data, the files
  and the command line.

Shared defaults (dashboard uids, thresholds, the lookback) live in
:mod:`otel_jobtrack.generators.defaults`, where the rules read them too.
"""

from otel_jobtrack.generators.dashboards.config import (
    CRON_UID,
    DEFAULT_CONFIG,
    QUESTIONS,
    SCHEDULE_UID,
    DashboardsConfig,
)
from otel_jobtrack.generators.dashboards.files import boards, main, render, stale_files, write
from otel_jobtrack.generators.dashboards.grafana import build
from otel_jobtrack.generators.dashboards.lint import lint, panels_of, rate_windows
from otel_jobtrack.generators.dashboards.settings import (
    all_settings,
    config_from_mapping,
    load_config,
)
from otel_jobtrack.generators.dashboards.specs import BoardSpec, PanelSpec, RowSpec, Target

__all__ = [
    "CRON_UID",
    "DEFAULT_CONFIG",
    "QUESTIONS",
    "SCHEDULE_UID",
    "BoardSpec",
    "DashboardsConfig",
    "PanelSpec",
    "RowSpec",
    "Target",
    "all_settings",
    "boards",
    "build",
    "config_from_mapping",
    "lint",
    "load_config",
    "main",
    "panels_of",
    "rate_windows",
    "render",
    "stale_files",
    "write",
]
