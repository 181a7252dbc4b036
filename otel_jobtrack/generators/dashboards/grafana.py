"""Grafana JSON from the board specs, built with grafana-foundation-sdk (Grafana 11)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.dashboards.config import (
    DEFAULT_CONFIG,
    DS_INPUT,
    DS_REF_UID,
    DS_VARIABLE,
    GRAFANA_VERSION,
    VARIABLES,
    DashboardsConfig,
)
from otel_jobtrack.generators.dashboards.queries import Queries
from otel_jobtrack.generators.dashboards.settings import changed_settings
from otel_jobtrack.generators.dashboards.specs import BoardSpec, PanelSpec, Target


def _sdk() -> Any:
    try:
        from grafana_foundation_sdk.builders import dashboard
    except ImportError:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "otel-jobtrack dashboards needs grafana-foundation-sdk: "
            "pip install 'otel-jobtrack[dashboards]'"
        ) from None
    return dashboard


def _datasource_ref() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid=DS_REF_UID)


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=color) for v, color in steps])
    )


def _query(target: Target, ref_id: str, table: bool) -> Any:
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

    query = (
        prometheus.Dataquery()
        .expr(target.expr)
        .ref_id(ref_id)
        .datasource(_datasource_ref())
        .editor_mode(QueryEditorMode.CODE)
    )
    if table:
        query = query.instant().format(PromQueryFormat.TABLE)
    elif target.instant:
        query = query.instant()
    else:
        query = query.range()
    if target.legend:
        query = query.legend_format(target.legend)
    return query


def _ref_ids() -> Iterator[str]:
    yield from "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _panel(spec: PanelSpec, panel_id: int) -> Any:
    from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
    from grafana_foundation_sdk.builders.common import (
        ReduceDataOptions,
        StackingConfig,
        VizLegendOptions,
        VizTooltipOptions,
    )
    from grafana_foundation_sdk.models.common import (
        BarGaugeDisplayMode,
        BigValueColorMode,
        BigValueGraphMode,
        GraphThresholdsStyleMode,
        LegendDisplayMode,
        LegendPlacement,
        SortOrder,
        StackingMode,
        TooltipDisplayMode,
        VizOrientation,
    )
    from grafana_foundation_sdk.models.dashboard import DataTransformerConfig, DynamicConfigValue

    last = ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    builder: Any
    if spec.viz == "stat":
        builder = (
            stat.Panel()
            .reduce_options(last)
            .graph_mode(BigValueGraphMode.NONE)
            .color_mode(BigValueColorMode.VALUE)
        )
    elif spec.viz == "bargauge":
        builder = (
            bargauge.Panel()
            .reduce_options(last)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .orientation(VizOrientation.HORIZONTAL)
            .min(0)
        )
    elif spec.viz == "table":
        builder = table.Panel()
    elif spec.viz == "timeseries":
        from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig

        builder = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(
                VizLegendOptions()
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
        )
        if spec.stacked:
            builder = builder.stacking(StackingConfig().mode(StackingMode.NORMAL))
        if spec.thresholds:
            builder = builder.thresholds_style(
                GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
            )
    else:
        raise ValueError(f"unknown visualisation {spec.viz!r}")
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_datasource_ref())
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    if spec.thresholds and spec.viz != "table":
        builder = builder.thresholds(_thresholds(spec.thresholds))
    if spec.no_value:
        builder = builder.no_value(spec.no_value)
    if spec.max is not None:
        builder = builder.max(spec.max)
    is_table = spec.viz == "table"
    refs = _ref_ids()
    renames: dict[str, str] = {}
    for target in spec.targets:
        ref = next(refs)
        builder = builder.with_target(_query(target, ref, is_table))
        if is_table:
            column = target.column or ref
            renames[f"Value #{ref}"] = column
            props = [DynamicConfigValue(id_val="unit", value=target.unit or spec.unit)]
            if target.thresholds:
                props += [
                    DynamicConfigValue(
                        id_val="thresholds", value=_thresholds(target.thresholds).build()
                    ),
                    DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                ]
            builder = builder.override_by_name(column, props)
    if is_table:
        builder = builder.with_transformation(
            DataTransformerConfig(id_val="merge", options={})
        ).with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": renames},
            )
        )
    return builder


def _variables(board: BoardSpec, cfg: DashboardsConfig) -> list[Any]:
    from grafana_foundation_sdk.models.dashboard import (
        VariableOption,
        VariableRefresh,
        VariableSort,
    )

    dashboard = _sdk()
    q = Queries(cfg)
    ds = (
        dashboard.DatasourceVariable(DS_VARIABLE)
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text=cfg.datasource, value=cfg.datasource))
    )
    if cfg.datasource_regex:
        ds = ds.regex(cfg.datasource_regex)
    kinds = "|".join(board.kinds)
    out = [ds]
    descriptions = {
        "kind": f"Kinds on this dashboard ({', '.join(board.kinds)}).",
        "job_name": "Job names of the selected kinds.",
        "tenant": f'Tenants of the selected jobs ("{c.SYSTEM_TENANT}": jobs without a tenant).',
    }
    for i, name in enumerate(VARIABLES):
        var = (
            dashboard.QueryVariable(name)
            .label(name)
            .description(descriptions[name])
            .datasource(_datasource_ref())
            .query(q.label_values(name, *VARIABLES[:i]))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(kinds if name == "kind" else ".*")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        if name == "kind":
            var = var.regex(f"/^({kinds})$/")
        out.append(var)
    return out


def generated_note(cfg: DashboardsConfig) -> str:
    changed = changed_settings(cfg)
    how = "otel-jobtrack dashboards --output-dir dashboards"
    settings = (
        f" with settings {json.dumps(changed, sort_keys=True)}" if changed else " with defaults"
    )
    return (
        f"Generated by `otel-jobtrack dashboards` (otel_jobtrack/dashboards.py){settings}. "
        f"Do not edit the JSON: change the code or settings and regenerate with `{how}`."
    )


def build(board: BoardSpec, cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """The importable Grafana JSON of one board (with ``__inputs`` for the import dialog)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import (
        DashboardCursorSync,
        DashboardLinkType,
        DataSourceRef,
    )

    dashboard = _sdk()
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(f"{board.summary} {generated_note(cfg)}")
        .tags(list(cfg.tags))
        .time(cfg.time_from, "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            dashboard.DashboardLink(board.link_title)
            .type(DashboardLinkType.LINK)
            .url(f"/d/{board.link_uid}")
            .icon("dashboard")
            .tooltip("Keeps the time range and the variables")
            .include_vars(True)
            .keep_time(True)
        )
    )
    if cfg.refresh:
        builder = builder.refresh(cfg.refresh)
    for var in _variables(board, cfg):
        builder = builder.with_variable(var)
    panel_id = 0
    for row in board.rows:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id))
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    head: dict[str, Any] = {}
    if DS_INPUT in cfg.datasource:
        head["__inputs"] = [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "Prometheus-compatible data source holding the jobtrack_* series",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
    head["__requires"] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [
        {"type": "panel", "id": viz, "name": viz, "version": ""}
        for viz in sorted({p.viz for r in board.rows for p in r.panels})
    ]
    head["__generated_by"] = generated_note(cfg)
    return {**head, **data}
