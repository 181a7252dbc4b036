"""Running the shipped dashboards' queries against a backend, as Grafana would run them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from otel_jobtrack.generators.dashboards import panels_of
from tests.backends import REPO_ROOT, PrometheusServer, VictoriaMetricsServer

DASHBOARD_DIR = REPO_ROOT / "dashboards"
BUILTINS = {"__rate_interval": "1m", "__range": "1m", "__interval": "1s"}
"""What Grafana would put in for the built-in variables on a short range."""
ALL = ".*"

QueryAPI = PrometheusServer | VictoriaMetricsServer


def load(uid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARD_DIR / f"{uid}.json").read_text())
    return data


def expand(text: str, board: dict[str, Any], chosen: Mapping[str, str] | None = None) -> str:
    """Template variables set to ``chosen`` or else to "All" (the board's ``allValue``), the
    built-ins to short windows."""
    values = dict(BUILTINS)
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = var.get("allValue") or ALL
    values.update(chosen or {})

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {text!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, text)


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = []
    for series in result:
        points = series.get("values") or [series["value"]]
        values += [float(v) for _, v in points if math.isfinite(float(v))]
    return values


def run_target(
    server: QueryAPI,
    board: dict[str, Any],
    target: Mapping[str, Any],
    start: float,
    chosen: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One panel target's result: an instant query, or a range query from ``start`` to now."""
    expr = expand(target["expr"], board, chosen)
    if target.get("instant"):
        return server.query(expr)
    return server.query_range(expr, start=start, step="1s")


def panels_without_data(
    server: QueryAPI, uid: str, start: float, chosen: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Panel title -> what went wrong, for every panel with a target that errs or returns no
    finite value (empty: every panel shows data)."""
    board = load(uid)
    problems: dict[str, list[str]] = {}
    for panel in panels_of(board):
        for target in panel["targets"]:
            expr = expand(target["expr"], board, chosen)
            try:
                result = run_target(server, board, target, start, chosen)
            except Exception as exc:  # the backend rejected the query: report it per panel
                problems.setdefault(panel["title"], []).append(f"{expr}\n  error: {exc}")
                continue
            if not finite_values(result):
                problems.setdefault(panel["title"], []).append(f"{expr}\n  no data")
    return problems
