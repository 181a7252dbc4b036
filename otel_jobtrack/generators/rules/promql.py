"""PromQL building blocks shared by the recording rules and the alerts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.defaults import (
    canonical_duration,
    format_duration,
    number,
    parse_duration,
    user_matchers,
)
from otel_jobtrack.generators.rules.config import RulesConfig

KJT: Final = "kind, job_name, tenant"
KJ: Final = "kind, job_name"
SUCCESS_MATCHER: Final = f'state="{c.SUCCESS}"'

IQR_TO_SIGMA: Final = 1.349
"""Inter-quartile range of a normal distribution in standard deviations (2 x 0.6745)."""


def sel(cfg: RulesConfig, metric: str, *matchers: str) -> str:
    """``metric{user selector, matchers}``: every raw jobtrack_* selector goes through here."""
    parts = [m for m in (user_matchers(cfg.selector), *matchers) if m]
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def kinds(kinds: Sequence[str]) -> str:
    """A matcher for one or several kinds."""
    return f'kind="{kinds[0]}"' if len(kinds) == 1 else f'kind=~"{"|".join(kinds)}"'


def indent(text: str, spaces: int = 2) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


def history_guard(cfg: RulesConfig, series: str, by: str) -> str:
    """``and`` clause keeping only series old enough for a clean baseline.

    A window count ramps up during its first alert window; the baseline covers
    ``[now - window - baseline, now - window]``; so the series must have existed
    ``2 x window + baseline`` ago for the baseline to hold only complete windows.
    """
    age = 2 * parse_duration(cfg.alert_window) + parse_duration(cfg.baseline_window)
    return f"and on ({by})\n  {series} offset {format_duration(age)}"


def baseline_range(cfg: RulesConfig, series: str) -> str:
    """``series`` over the baseline window that ends where the current alert window starts."""
    window = canonical_duration(cfg.baseline_window)
    return f"{series}[{window}] offset {canonical_duration(cfg.alert_window)}"


def median_expr(cfg: RulesConfig, series: str, by: str) -> str:
    return (
        f"quantile_over_time(0.5, {baseline_range(cfg, series)})\n{history_guard(cfg, series, by)}"
    )


def sigma_expr(cfg: RulesConfig, series: str, by: str) -> str:
    """Robust standard deviation: IQR / 1.349, floored at a share of the median.

    The median is computed here again rather than read from its recording: a rule never
    reads a series recorded in its own group (see :mod:`.recordings`).
    """
    rng = baseline_range(cfg, series)
    floor = f"quantile_over_time(0.5, {rng}) * {number(cfg.outlier_min_relative_sigma)}"
    return (
        "(\n"
        "    (\n"
        f"        quantile_over_time(0.75, {rng})\n"
        f"      - quantile_over_time(0.25, {rng})\n"
        f"    ) / {IQR_TO_SIGMA}\n"
        f"    >= {floor}\n"
        f"  or\n"
        f"    {floor}\n"
        ")\n"
        f"{history_guard(cfg, series, by)}"
    )
