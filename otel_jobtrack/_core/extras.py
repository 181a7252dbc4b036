"""Optional dependencies: which extra brings a module, and one clear line when it is missing.

The core install is what a Prometheus-only user needs (prometheus-client, wrapt). OTLP export,
regenerating rules and dashboards with custom settings, and the benchmarks come with extras;
without one, the command or exporter that needs it says which extra to install, in one line
rather than a traceback.
"""

from __future__ import annotations

import importlib.util
from typing import Final

PACKAGE: Final = "otel-jobtrack"

MODULE_EXTRAS: Final = {
    "opentelemetry.exporter.otlp.proto.grpc": "otlp-grpc",
    "grpc": "otlp-grpc",
    "opentelemetry": "otlp",
    "google.protobuf": "otlp",
    "yaml": "rules",
    "grafana_foundation_sdk": "dashboards",
}
"""Top-level modules of optional dependencies -> the extra that installs them (most specific
first)."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: {install_hint(extra)}", name=module)
        self.extra = extra


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install '{PACKAGE}[{extra}]'"


def installed(module: str) -> bool:
    """``True`` if ``module`` can be imported (its parent packages are imported to find out)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def require(module: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` unless ``module`` is installed."""
    if not installed(module):
        raise MissingExtra(what, extra, module)


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name), if it belongs to one."""
    if not module:
        return None
    for prefix, extra in MODULE_EXTRAS.items():
        if module == prefix or module.startswith(prefix + "."):
            return extra
    return None
