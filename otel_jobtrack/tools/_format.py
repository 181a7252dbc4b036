"""Numbers, durations, tables and colour for the terminal and text reports.

Counts from ``increase()`` are extrapolated and rarely whole; they are shown rounded, with
one decimal below 10 so that "0.4 failures" does not read as "none".
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Final, TextIO

DASH: Final = "-"
_SPARKS: Final = "▁▂▃▄▅▆▇█"
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*m")

STYLES: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bold red": "1;31",
    "bold yellow": "1;33",
    "bold green": "1;32",
}


def missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def duration(seconds: float | None) -> str:
    """A compact duration: ``850ms``, ``12s``, ``3m20s``, ``2h05m``, ``3d4h``."""
    if missing(seconds):
        return DASH
    assert seconds is not None
    negative = seconds < 0
    s = abs(seconds)
    if s < 1:
        text = f"{s * 1000:.0f}ms" if s >= 0.001 else ("0s" if s == 0 else "<1ms")
    elif s < 10:
        text = f"{s:.1f}s".replace(".0s", "s")
    elif s < 60:
        text = f"{s:.0f}s"
    elif s < 3600:
        m, r = divmod(round(s), 60)
        text = f"{m}m" + (f"{r:02d}s" if r else "")
    elif s < 86400:
        h, r = divmod(round(s / 60), 60)
        text = f"{h}h" + (f"{r:02d}m" if r else "")
    else:
        d, r = divmod(round(s / 3600), 24)
        text = f"{d}d" + (f"{r}h" if r else "")
    return f"-{text}" if negative else text


def count(value: float | None) -> str:
    """A count: whole numbers with thousands separators; one decimal below 10."""
    if missing(value):
        return DASH
    assert value is not None
    if abs(value) >= 9.95 or float(value).is_integer():
        return f"{round(value):,}"
    return f"{value:.1f}"


def share(value: float | None) -> str:
    """A fraction as a percentage: ``12%``, ``0.4%``, ``0%``."""
    if missing(value):
        return DASH
    assert value is not None
    pct = value * 100
    if pct == 0 or pct >= 9.95:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%"


def ratio(value: float | None) -> str:
    """A multiple such as ``9.8x``."""
    if missing(value):
        return DASH
    assert value is not None
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def sparkline(values: Sequence[float | None]) -> str:
    """Unicode block bars scaled to the largest value (gaps for missing points)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    top = max(present, default=0.0)
    out = []
    for v in values:
        if v is None or math.isnan(v):
            out.append(" ")
        elif top <= 0:
            out.append(_SPARKS[0])
        else:
            out.append(_SPARKS[min(len(_SPARKS) - 1, int(v / top * (len(_SPARKS) - 1) + 0.5))])
    return "".join(out)


# ------------------------------------------------------------------------------ colour


def color_enabled(stream: TextIO, mode: str = "auto") -> bool:
    """``always``/``never``, or ``auto``: a terminal, ``NO_COLOR`` unset or empty, and
    ``TERM`` not ``dumb`` (https://no-color.org)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, style: str | None, enabled: bool) -> str:
    if not enabled or not style or not text:
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def visible_len(text: str) -> int:
    return len(_ANSI_RE.sub("", text))


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    gap: str = "  ",
) -> list[str]:
    """Lines of an aligned text table; cells may hold ANSI colour (not counted as width).
    The last column is never padded, so long notes do not make trailing blanks."""
    widths = [visible_len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - visible_len(cell))
            if i == len(row) - 1 and not right[i]:
                cells.append(cell)
            else:
                cells.append(pad + cell if right[i] else cell + pad)
        lines.append(gap.join(cells).rstrip())
    return lines


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)
    return lines
