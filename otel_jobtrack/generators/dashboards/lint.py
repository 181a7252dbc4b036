"""Grafana conventions checked on the generated JSON, in the spirit of Grafana's
dashboard-linter."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from otel_jobtrack.generators.dashboards.config import (
    DS_VARIABLE,
    QUESTIONS,
    RATE_INTERVAL,
    VARIABLES,
)

_RANGE_FUNCS: Final = re.compile(r"\b(rate|irate|increase)\s*\(")
_UNITLESS: Final = ("", "none")


def _range_of_first_argument(expr: str, open_paren: int) -> str | None:
    """The ``[...]`` range closing the first argument of the call opened at ``open_paren``."""
    depth = 0
    i = open_paren
    while i < len(expr):
        ch = expr[i]
        if ch == '"':
            i = expr.index('"', i + 1)
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth == 0:
                return None
        elif ch == "[" and depth == 1:
            return expr[i + 1 : expr.index("]", i)]
        i += 1
    return None


def rate_windows(expr: str) -> list[tuple[str, str | None]]:
    """``(function, range)`` of every rate/irate/increase call in ``expr``."""
    return [
        (m.group(1), _range_of_first_argument(expr, m.end() - 1))
        for m in _RANGE_FUNCS.finditer(expr)
    ]


def _is_variable_ref(uid: object) -> bool:
    return isinstance(uid, str) and uid.startswith("$")


def _walk_datasources(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _walk_datasources(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk_datasources(value, f"{path}[{i}]")


def panels_of(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def lint(dashboard: Mapping[str, Any]) -> list[str]:
    """Problems with Grafana conventions, in the spirit of Grafana's dashboard-linter.

    Checks: a Prometheus ``datasource`` variable; every panel and target on it; no hard-coded
    data source uid anywhere; query variables on it too, multi-select with "All"; units and
    descriptions on every panel, the description opening with one of :data:`QUESTIONS`;
    ``$__rate_interval`` as the range of every rate/irate/increase; unique panel ids and
    target refIds.
    """
    problems: list[str] = []
    variables = dashboard.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("type") == "datasource"]
    if not any(v.get("query") == "prometheus" for v in ds_vars):
        problems.append("no Prometheus datasource template variable")
    ds_names = {v.get("name") for v in ds_vars}
    allowed_refs = {f"${n}" for n in ds_names} | {f"${{{n}}}" for n in ds_names}

    def uses_variable(ref: object) -> bool:
        uid = ref.get("uid") if isinstance(ref, Mapping) else ref
        return uid in allowed_refs

    for path, ref in _walk_datasources(dashboard):
        uid = ref.get("uid") if isinstance(ref, Mapping) else ref
        builtin = isinstance(ref, Mapping) and ref.get("type") == "grafana"
        if not builtin and not _is_variable_ref(uid):
            problems.append(f"{path}: hard-coded datasource {ref!r}")
    for var in variables:
        if var.get("type") != "query":
            continue
        name = var.get("name")
        if not uses_variable(var.get("datasource")):
            problems.append(f"variable {name}: datasource is not the datasource variable")
        if not str(var.get("query", "")).startswith("label_values("):
            problems.append(f"variable {name}: query is not label_values(...)")
        if not (var.get("multi") and var.get("includeAll")):
            problems.append(f"variable {name}: not multi-select with All")
    names = {v.get("name") for v in variables}
    for required in (DS_VARIABLE, *VARIABLES):
        if required not in names:
            problems.append(f"variable {required} missing")
    top = list(dashboard.get("panels", []))
    ids = [p.get("id") for p in top] + [
        inner.get("id") for p in top if p.get("type") == "row" for inner in p.get("panels", [])
    ]
    for pid in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problems.append(f"panel id {pid} used more than once")
    for panel in panels_of(dashboard):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not uses_variable(panel.get("datasource")):
            problems.append(f"{title}: panel datasource is not the datasource variable")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        if unit in _UNITLESS:
            problems.append(f"{title}: no unit")
        description = panel.get("description", "")
        if not description:
            problems.append(f"{title}: no description")
        elif not description.startswith(QUESTIONS):
            problems.append(f"{title}: description does not open with one of the questions")
        if "?" not in title:
            problems.append(f"{title}: title is not a question")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{title}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            problems.append(f"{title}: refIds missing or repeated: {refs}")
        for target in targets:
            ref = target.get("refId")
            if "datasource" in target and not uses_variable(target["datasource"]):
                problems.append(f"{title} {ref}: target datasource is not the variable")
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{title} {ref}: empty expr")
            for func, window in rate_windows(expr):
                if window != RATE_INTERVAL:
                    problems.append(
                        f"{title} {ref}: {func}() over [{window}] instead of [{RATE_INTERVAL}]"
                    )
    return problems
