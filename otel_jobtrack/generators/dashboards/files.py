"""The dashboard files (JSON and a README) and the ``otel-jobtrack dashboards`` command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from otel_jobtrack.generators import _files as generate
from otel_jobtrack.generators import shipped
from otel_jobtrack.generators.dashboards.config import DEFAULT_CONFIG, README_FILE, DashboardsConfig
from otel_jobtrack.generators.dashboards.cron import cron_board
from otel_jobtrack.generators.dashboards.grafana import build, generated_note
from otel_jobtrack.generators.dashboards.schedule import schedule_board
from otel_jobtrack.generators.dashboards.settings import (
    all_settings,
    config_from_mapping,
    load_config,
    parse_value,
)
from otel_jobtrack.generators.dashboards.specs import BoardSpec


def boards(cfg: DashboardsConfig = DEFAULT_CONFIG) -> tuple[BoardSpec, ...]:
    """Both dashboards as specs (what the panels show), before Grafana JSON."""
    return (cron_board(cfg), schedule_board(cfg))


def render(cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, str]:
    """Every generated file: path relative to the output directory -> content."""
    files = {}
    for board in boards(cfg):
        files[f"{board.uid}.json"] = json.dumps(build(board, cfg), indent=2) + "\n"
    files[README_FILE] = _readme(cfg)
    return files


def stale_files(out_dir: Path, cfg: DashboardsConfig = DEFAULT_CONFIG) -> list[str]:
    """Generated files missing from ``out_dir`` or different from what ``cfg`` generates."""
    return generate.stale_files(render(cfg), out_dir)


def write(out_dir: Path, cfg: DashboardsConfig = DEFAULT_CONFIG) -> list[Path]:
    """Write every generated file under ``out_dir``; other files there are left alone."""
    return generate.write_files(render(cfg), out_dir)


def _readme(cfg: DashboardsConfig) -> str:
    lines = [
        "<!--",
        generated_note(cfg),
        "-->",
        "# Grafana dashboards for otel-jobtrack",
        "",
        "Import both into Grafana 10 or 11 (UI, provisioning or HTTP API: see",
        f"[docs/dashboards.md]({shipped.doc_url('docs/dashboards.md')}), which also describes "
        "every row).",
        "",
    ]
    for board in boards(cfg):
        panels = sum(len(r.panels) for r in board.rows)
        lines.append(f"- `{board.uid}.json` (uid `{board.uid}`, {panels} panels): {board.summary}")
    lines += [
        "",
        "Both use a `datasource` variable (asked for as `DS_PROMETHEUS` on import) and the",
        "`kind`, `job_name` and `tenant` variables that alert links set. They query the raw",
        "`jobtrack_*` series, so they work on Prometheus and on VictoriaMetrics alike.",
        "",
        "These files are generated; a test fails when they are stale. To regenerate, with your",
        "own settings if you like:",
        "",
        "```sh",
        "otel-jobtrack dashboards --print-config > dashboards-settings.json   # every setting",
        "otel-jobtrack dashboards --config dashboards-settings.json --output-dir dashboards",
        "otel-jobtrack dashboards --selector 'job=\"billing-worker\"' --datasource Mimir",
        "otel-jobtrack dashboards --check      # exit 1 if the files here are stale",
        "```",
        "",
    ]
    return "\n".join(lines)


def _dashboards_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasource",
        help="data source the datasource variable selects "
        "first (name or uid; default: asked on import)",
    )


def main(argv: list[str]) -> int:
    """``otel-jobtrack dashboards``: write (or ``--check``) the generated dashboards."""
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack dashboards",
        description="Generate the Grafana dashboards for otel-jobtrack metrics.",
    )
    generate.add_common_arguments(
        parser,
        "dashboards",
        config_help="JSON (or YAML) file of settings (see --print-config)",
        set_help="one setting, value in JSON/YAML syntax (repeatable)",
        print_help="print every setting as JSON (a starting point for --config)",
        extra=_dashboards_arguments,
    )
    gen = generate.Generator(
        prog="otel-jobtrack dashboards",
        default=DEFAULT_CONFIG,
        load_config=load_config,
        parse_value=parse_value,
        config_from_mapping=config_from_mapping,
        option_keys=("selector", "datasource"),
        errors=(OSError, ValueError),
        dump_settings=lambda cfg: json.dumps(all_settings(cfg), indent=2) + "\n",
        stale_files=stale_files,
        write=write,
        shipped="dashboards",
        needs=generate.Needs("grafana_foundation_sdk", "grafana-foundation-sdk", "dashboards"),
        render=render,
    )
    return generate.run_generator(gen, parser.parse_args(argv))
