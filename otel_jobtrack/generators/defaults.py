"""Defaults and checks shared by the rule and the dashboard generators.

The alerts link to the dashboards by uid, and a dashboard colours a share red where the alert
on it would fire: both read those values from here, so they cannot drift apart. Durations are
Prometheus durations (``90s``, ``1h30m``, ``2d``) in both, parsed and checked once here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from otel_jobtrack._core import contract as c

CRON_DASHBOARD_UID: Final = "jobtrack-cron"
"""Dashboard of the global triggers; alerts on a ``cron`` job link here."""
SCHEDULE_DASHBOARD_UID: Final = "jobtrack-schedule"
"""Dashboard of the per-tenant side; alerts on other kinds link here."""

FAILURE_RATIO: Final = 0.1
"""Share of failed runs that alerts (``JobTrackRunFailures``) and shows red."""
LIMITED_RATIO: Final = 0.25
"""Share of limited runs above which limiting may alert, and that shows red."""
LOOKBACK: Final = "2d"
"""How long a last success and a declared cadence outlive the process that exported them."""

# ---------------------------------------------------------------------------------- durations

_UNITS: Final = (
    ("y", 365 * 86400),
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)
_DURATION_RE: Final = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``90s``, ``1h30m`` or ``1d``."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a duration: {text!r}")
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2)
        scale = 0.001 if unit == "ms" else dict(_UNITS)[unit]
        total += int(match.group(1)) * scale
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"not a Prometheus duration: {text!r} (e.g. 30s, 5m, 1h30m, 1d)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``93600`` -> ``1d2h``)."""
    rest = int(seconds)
    if rest != seconds or rest < 0:
        raise ValueError(f"durations are whole, non-negative seconds: {seconds}")
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS[2:]:  # days and below: weeks and years read badly in names
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def canonical_duration(duration: str) -> str:
    """``duration`` written the one way the generated files use (``60m`` -> ``1h``)."""
    return format_duration(parse_duration(duration))


# ---------------------------------------------------------------------------------- checks


def check_positive_duration(name: str, value: str) -> None:
    """Refuse a setting that is not a positive Prometheus duration, naming the setting."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a Prometheus duration such as 2d: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"{name} must be a positive duration, got {value!r}")


def check_selector(selector: str) -> None:
    """The user's selector holds label matchers only: they are added inside every ``{...}``."""
    if any(ch in selector for ch in "{}"):
        raise ValueError('selector holds matchers only, without braces: job="billing"')


def check_kinds(name: str, kinds: Sequence[str]) -> None:
    """A non-empty subset of the contract's kinds."""
    if not kinds or set(kinds) - set(c.KINDS):
        raise ValueError(f"{name} must be a non-empty subset of {c.KINDS}, got {kinds}")


# ---------------------------------------------------------------------------------- PromQL text


def number(value: float) -> str:
    """A float as PromQL text without noise (``3.0`` -> ``3``)."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def user_matchers(selector: str) -> str:
    """The user's selector ready to join with other matchers (no trailing comma)."""
    return selector.strip().rstrip(",")
