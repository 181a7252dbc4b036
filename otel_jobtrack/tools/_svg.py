"""Small inline SVG charts for the HTML report: no script, no external asset, no library.

Every chart is an ``<svg class="chart" data-chart=KIND>`` whose marks carry a ``<title>``
(the browser shows it on hover), so the report stays one self-contained file that prints
and renders headless exactly as it shows on screen.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence
from typing import Final

from otel_jobtrack.tools import _format as fmt

WIDTH: Final = 360
HEIGHT: Final = 120
_LEFT: Final = 44
_RIGHT: Final = 8
_TOP: Final = 18
_BOTTOM: Final = 18
AXIS: Final = "#8a8f98"
GRID: Final = "#e3e6ea"
TEXT: Final = "#3c4048"

Formatter = Callable[[float | None], str]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def time_label(t: float, span: float) -> str:
    """Clock time for short spans, date and hour for long ones (UTC)."""
    moment = dt.datetime.fromtimestamp(t, dt.UTC)
    if span <= 600:
        return moment.strftime("%H:%M:%S")
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M")


def _frame(kind: str, title: str, width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg class="chart" data-chart="{_e(kind)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}">'
        f'<text x="{_LEFT}" y="12" font-size="11" font-weight="600" fill="{TEXT}">'
        f"{_e(title)}</text>" + "".join(body) + "</svg>"
    )


def _axes(
    top_value: float,
    times: Sequence[float],
    step: float,
    width: int,
    height: int,
    value_fmt: Formatter,
) -> list[str]:
    plot_bottom = height - _BOTTOM
    out = [
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{width - _RIGHT}" y2="{_TOP}" '
        f'stroke="{GRID}" stroke-width="1"/>',
        f'<line x1="{_LEFT}" y1="{plot_bottom}" x2="{width - _RIGHT}" y2="{plot_bottom}" '
        f'stroke="{AXIS}" stroke-width="1"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 4}" font-size="10" text-anchor="end" '
        f'fill="{TEXT}">{_e(value_fmt(top_value))}</text>',
        f'<text x="{_LEFT - 4}" y="{plot_bottom}" font-size="10" text-anchor="end" '
        f'fill="{TEXT}">0</text>',
    ]
    if times:
        span = times[-1] - times[0] + step
        first = time_label(times[0] - step, span)
        last = time_label(times[-1], span)
        out.append(
            f'<text x="{_LEFT}" y="{height - 4}" font-size="10" fill="{TEXT}">{_e(first)}</text>'
        )
        out.append(
            f'<text x="{width - _RIGHT}" y="{height - 4}" font-size="10" text-anchor="end" '
            f'fill="{TEXT}">{_e(last)}</text>'
        )
    return out


def _top(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def bars(
    kind: str,
    title: str,
    times: Sequence[float],
    step: float,
    layers: Sequence[tuple[str, str, Sequence[float | None]]],
    value_fmt: Formatter = fmt.count,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Stacked bars, one per time step; ``layers`` are ``(name, colour, values)``."""
    n = len(times)
    totals = [
        sum(v for _, _, vals in layers if (v := vals[i]) is not None and v > 0) for i in range(n)
    ]
    top = _top(totals)
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    gap = min(1.0, slot * 0.2)
    body = _axes(top, times, step, width, height, value_fmt)
    span = (times[-1] - times[0] + step) if times else 0.0
    for i in range(n):
        base = 0.0
        x = _LEFT + i * slot + gap / 2
        for name, color, values in layers:
            v = values[i]
            if v is None or v <= 0:
                continue
            h = v / top * plot_h
            y = height - _BOTTOM - base - h
            label = f"{time_label(times[i], span)} {name}: {value_fmt(v)}"
            body.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(slot - gap, 0.5):.2f}" '
                f'height="{h:.2f}" fill="{color}"><title>{_e(label)}</title></rect>'
            )
            base += h
    return _frame(kind, title, width, height, body)


def line(
    kind: str,
    title: str,
    times: Sequence[float],
    step: float,
    values: Sequence[float | None],
    color: str,
    value_fmt: Formatter = fmt.duration,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """A line with a dot per point; missing points break the line."""
    n = len(times)
    present = [v for v in values if v is not None and not fmt.missing(v)]
    top = _top(present)
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    body = _axes(top, times, step, width, height, value_fmt)
    span = (times[-1] - times[0] + step) if times else 0.0
    segment: list[str] = []
    segments: list[list[str]] = []
    dots = []
    for i, v in enumerate(values):
        if v is None or fmt.missing(v):
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = _LEFT + (i + 0.5) * slot
        y = height - _BOTTOM - v / top * plot_h
        segment.append(f"{x:.2f},{y:.2f}")
        label = f"{time_label(times[i], span)}: {value_fmt(v)}"
        dots.append(
            f'<circle cx="{x:.2f}" cy="{y:.2f}" r="2" fill="{color}"><title>{_e(label)}</title>'
            "</circle>"
        )
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            body.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" '
                'stroke-width="1.5"/>'
            )
    body.extend(dots)
    return _frame(kind, title, width, height, body)


def hbars(
    kind: str,
    title: str,
    items: Sequence[tuple[str, float, bool]],
    reference: float | None = None,
    reference_label: str = "median",
    value_fmt: Formatter = fmt.count,
    width: int = WIDTH * 2,
    row_height: int = 16,
) -> str:
    """Horizontal bars, one per ``(label, value, highlighted)``, with a dashed reference."""
    label_w = min(220, 7 * max((len(label) for label, _, _ in items), default=4) + 8)
    value_w = 56
    plot_w = width - label_w - value_w - _RIGHT
    height = _TOP + 6 + row_height * len(items) + 4
    top = _top([v for _, v, _ in items])
    body = []
    for i, (label, value, hot) in enumerate(items):
        y = _TOP + 6 + i * row_height
        w = max(value, 0.0) / top * plot_w
        color = "#d9480f" if hot else "#4263eb"
        body.append(
            f'<text x="{label_w - 6}" y="{y + row_height - 5}" font-size="11" '
            f'text-anchor="end" fill="{TEXT}">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.2f}" height="{row_height - 5}" '
            f'fill="{color}"><title>{_e(f"{label}: {value_fmt(value)}")}</title></rect>'
            f'<text x="{label_w + w + 4:.2f}" y="{y + row_height - 5}" font-size="10" '
            f'fill="{TEXT}">{_e(value_fmt(value))}</text>'
        )
    if reference is not None and reference > 0:
        x = label_w + reference / top * plot_w
        body.append(
            f'<line x1="{x:.2f}" y1="{_TOP}" x2="{x:.2f}" y2="{height - 2}" stroke="{AXIS}" '
            f'stroke-dasharray="3,3"><title>{_e(reference_label)}: '
            f"{_e(value_fmt(reference))}</title></line>"
        )
    return _frame(kind, title, width, height, body).replace(
        f'<text x="{_LEFT}" y="12"', f'<text x="{label_w}" y="12"', 1
    )


def timeline(
    kind: str,
    title: str,
    start: float,
    end: float,
    rows: Sequence[tuple[str, Sequence[tuple[float, float]], str]],
    width: int = WIDTH * 2,
    row_height: int = 16,
) -> str:
    """One lane per ``(label, [(from, to)], colour)`` over ``start..end``."""
    label_w = min(480, 6 * max((len(label) for label, _, _ in rows), default=4) + 12)
    plot_w = width - label_w - _RIGHT
    height = _TOP + row_height * len(rows) + _BOTTOM
    span = max(end - start, 1e-9)
    body = []
    for i, (label, spans, color) in enumerate(rows):
        y = _TOP + i * row_height
        body.append(
            f'<text x="{label_w - 6}" y="{y + row_height - 5}" font-size="10" '
            f'text-anchor="end" fill="{TEXT}">{_e(label)}</text>'
            f'<line x1="{label_w}" y1="{y + row_height / 2:.1f}" x2="{width - _RIGHT}" '
            f'y2="{y + row_height / 2:.1f}" stroke="{GRID}"/>'
        )
        for a, b in spans:
            x = label_w + (max(a, start) - start) / span * plot_w
            w = max((min(b, end) - max(a, start)) / span * plot_w, 1.5)
            text = (
                f"{label}: {time_label(a, span)} to {time_label(b, span)} ({fmt.duration(b - a)})"
            )
            body.append(
                f'<rect x="{x:.2f}" y="{y + 3}" width="{w:.2f}" height="{row_height - 6}" '
                f'fill="{color}"><title>{_e(text)}</title></rect>'
            )
    body.append(
        f'<text x="{label_w}" y="{height - 4}" font-size="10" fill="{TEXT}">'
        f"{_e(time_label(start, span))}</text>"
        f'<text x="{width - _RIGHT}" y="{height - 4}" font-size="10" text-anchor="end" '
        f'fill="{TEXT}">{_e(time_label(end, span))}</text>'
    )
    return _frame(kind, title, width, height, body).replace(
        f'<text x="{_LEFT}" y="12"', f'<text x="{label_w}" y="12"', 1
    )
