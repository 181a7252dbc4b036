"""The ``otel-jobtrack`` command: tracked commands, demo workload, rules, dashboards, runbook,
status and reports from a Prometheus API, benchmarks."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from otel_jobtrack import __version__
from otel_jobtrack._core import extras

_COMMANDS = {
    "run": (
        "otel_jobtrack.tools.run_command",
        "run any command as one tracked job run (-- command args...)",
    ),
    "demo": (
        "otel_jobtrack.tools.demo",
        "run a simulated cron/schedule/resource workload serving /metrics",
    ),
    "rules": (
        "otel_jobtrack.generators.rules",
        "generate Prometheus alert and recording rules into alerts/",
    ),
    "dashboards": (
        "otel_jobtrack.generators.dashboards",
        "generate Grafana dashboards into dashboards/",
    ),
    "status": (
        "otel_jobtrack.tools.status",
        "one line per job from a Prometheus API: overdue, failing, usual runs, alerts",
    ),
    "report": (
        "otel_jobtrack.tools.report",
        "a report of a period (HTML, PNG, PDF, CSV, Markdown), optionally sent to a webhook",
    ),
    "bench": (
        "otel_jobtrack.tools.bench",
        "measure per-run overhead and scrape cost against baselines",
    ),
    "runbook": (
        "otel_jobtrack.tools.runbook",
        "print the alert runbook, or the section of one alert",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand module's ``main(argv)``."""
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack",
        description="Tell whether recurring jobs really ran: metrics, rules and dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not args or args[0] not in _COMMANDS:
        parser.parse_args(args or ["--help"])
        return 2
    try:
        module = importlib.import_module(_COMMANDS[args[0]][0])
        result: int = module.main(args[1:])
    except ImportError as exc:
        message = _missing_extra(exc)
        if message is None:
            raise
        print(f"otel-jobtrack {args[0]}: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `otel-jobtrack runbook | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


def _missing_extra(exc: ImportError) -> str | None:
    """One line naming the extra to install, if ``exc`` is a missing optional dependency."""
    if isinstance(exc, extras.MissingExtra):
        return str(exc)
    extra = extras.extra_for(exc.name) if isinstance(exc, ModuleNotFoundError) else None
    if extra is None:
        return None
    return f"{exc.name} is not installed: {extras.install_hint(extra)}"


if __name__ == "__main__":
    sys.exit(main())
