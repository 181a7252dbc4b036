"""What a board shows, before Grafana JSON: boards of rows of panels of targets, and the
colour steps the panels share."""

from __future__ import annotations

from dataclasses import dataclass

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.dashboards.config import RATIO, DashboardsConfig
from otel_jobtrack.generators.dashboards.queries import Queries

Steps = tuple[tuple[float | None, str], ...]
"""Threshold steps: ``(value, colour)``, the first value ``None`` (the base colour)."""


@dataclass(frozen=True)
class Target:
    """One query of a panel; in a table, one column (``column``, ``unit``)."""

    expr: str
    legend: str = ""
    instant: bool = False
    column: str = ""
    unit: str = ""
    thresholds: Steps = ()
    """Table column colouring (panels other than tables use the panel's thresholds)."""


@dataclass(frozen=True)
class PanelSpec:
    """What a panel shows and which question it answers; turned into SDK builders later."""

    viz: str
    """``stat``, ``timeseries``, ``bargauge`` or ``table``."""
    title: str
    question: str
    text: str
    unit: str
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8
    thresholds: Steps = ()
    no_value: str = ""
    stacked: bool = False
    max: float | None = None

    @property
    def description(self) -> str:
        return f"{self.question} {self.text}"


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True)
class BoardSpec:
    uid: str
    title: str
    summary: str
    kinds: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    link_uid: str
    link_title: str


def green_red(red: float, orange: float | None = None) -> Steps:
    """Green, then orange from ``orange`` (if given), then red from ``red``."""
    steps: list[tuple[float | None, str]] = [(None, "green")]
    if orange is not None:
        steps.append((orange, "orange"))
    steps.append((red, "red"))
    return tuple(steps)


def overdue_steps(cfg: DashboardsConfig) -> Steps:
    """Share of the allowed gap used: red at 1, where the missed-run alert fires."""
    return green_red(1.0, cfg.overdue_warn)


def failure_steps(cfg: DashboardsConfig) -> Steps:
    return green_red(cfg.failure_ratio, cfg.failure_ratio / 2)


def limited_steps(cfg: DashboardsConfig) -> Steps:
    return green_red(cfg.limited_ratio, cfg.limited_ratio / 2)


def long_run_steps(cfg: DashboardsConfig) -> Steps:
    return green_red(cfg.long_run_seconds, cfg.long_run_seconds / 2)


def volume_steps(cfg: DashboardsConfig) -> Steps:
    return green_red(cfg.volume_ratio, (1 + cfg.volume_ratio) / 2)


SPREAD_STEPS: Steps = green_red(0.5, 0.01)
"""Share of jobs or tenants failing: orange from the first, red from half of them."""
ONE_OR_MORE: Steps = green_red(1)
"""A count that should be 0."""
AT_LEAST_ONE: Steps = ((None, "red"), (1.0, "green"))
"""Runs per declared interval: red below 1."""


def share_columns(q: Queries, by: str) -> tuple[Target, Target]:
    """Table columns: the failed and the limited share of runs per ``by``."""
    return (
        Target(
            q.state_ratio(c.FAILURE, by),
            column="failed",
            unit=RATIO,
            thresholds=failure_steps(q.cfg),
        ),
        Target(
            q.state_ratio(c.LIMITED, by),
            column="limited",
            unit=RATIO,
            thresholds=limited_steps(q.cfg),
        ),
    )
