"""Settings as plain data: what ``--print-config`` prints and ``--config``/``--set`` read."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otel_jobtrack.generators import _files as generate
from otel_jobtrack.generators.dashboards.config import DEFAULT_CONFIG, DashboardsConfig


def changed_settings(cfg: DashboardsConfig) -> dict[str, Any]:
    out = {}
    for key, value in all_settings(cfg).items():
        if value != all_settings(DEFAULT_CONFIG)[key]:
            out[key] = value
    return out


def all_settings(cfg: DashboardsConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """Every setting as plain data (``--print-config``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(DashboardsConfig):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_mapping(
    data: Mapping[str, Any], base: DashboardsConfig = DEFAULT_CONFIG
) -> DashboardsConfig:
    """``base`` with the settings in ``data`` (plain data, e.g. from YAML or JSON) applied."""
    return generate.apply_settings(base, data)


def parse_value(raw: str) -> Any:
    """A ``--set`` value: YAML when PyYAML is installed, else JSON, else the plain string."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: Path, base: DashboardsConfig = DEFAULT_CONFIG) -> DashboardsConfig:
    """Settings from a JSON file, or YAML when PyYAML is installed."""
    parse = parse_value if path.suffix in (".yaml", ".yml") else json.loads
    return config_from_mapping(generate.load_settings(path, parse), base)
