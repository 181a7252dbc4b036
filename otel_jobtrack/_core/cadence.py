"""Expected cadence from a cron expression: the longest gap between two scheduled runs.

The missed-run alert compares "time since last success" with this gap plus a grace period,
so one generic rule serves every job. Standard five-field syntax is understood (lists,
ranges, steps, month and weekday names, ``@hourly``-style macros); when both day-of-month
and day-of-week are restricted, a day matches either, as in Vixie cron.
"""

from __future__ import annotations

import datetime as dt
import itertools

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def _value(text: str, names: dict[str, int], field: str, expr: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ValueError(f"cron expression {expr!r}: bad {field} value {text!r}")
    return int(text)


def _parse_field(
    text: str, field: str, low: int, high: int, names: dict[str, int], expr: str
) -> tuple[set[int], bool]:
    """Values a field allows, and whether the field was restricted (not ``*``)."""
    values: set[int] = set()
    restricted = not text.startswith("*")
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron expression {expr!r}: bad step {step_text!r} in {field}")
            step = int(step_text)
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, names, field, expr), _value(b, names, field, expr)
        else:
            start = _value(rng, names, field, expr)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(f"cron expression {expr!r}: {field} {rng!r} outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values, restricted


def cron_max_interval(expr: str) -> float:
    """Longest gap in seconds between two consecutive fire times of ``expr``.

    Raises ``ValueError`` for an expression that is malformed or never fires.
    """
    if not isinstance(expr, str):
        raise ValueError(f"cron expression must be a string, got {expr!r}")
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"cron expression {expr!r}: expected 5 fields, got {len(parts)}")
    parsed = [_parse_field(p, *f, expr) for p, f in zip(parts, _FIELDS, strict=False)]
    (minutes, _), (hours, _), (mdays, mday_r), (months, _), (wdays, wday_r) = parsed
    if 7 in wdays:
        wdays = (wdays - {7}) | {0}
    daily = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in itertools.pairwise(daily)]
    # Walk 4 years plus a bit (every leap-year and weekday pattern) of calendar days.
    start = dt.date(2024, 1, 1)
    matching: list[int] = []
    for offset in range(4 * 366 + 14):
        day = start + dt.timedelta(days=offset)
        if day.month not in months:
            continue
        dom_ok = day.day in mdays
        dow_ok = (day.isoweekday() % 7) in wdays
        ok = (dom_ok or dow_ok) if (mday_r and wday_r) else (dom_ok and dow_ok)
        if ok:
            matching.append(offset)
    if not matching or not daily:
        raise ValueError(f"cron expression {expr!r} never fires")
    if len(matching) == 1:
        raise ValueError(f"cron expression {expr!r} fires less than once a year")
    for a, b in itertools.pairwise(matching):
        gaps.append((b - a) * 1440 - daily[-1] + daily[0])
    return float(max(gaps) * 60)
