"""The ``otel-jobtrack`` command: demo workload, rule and dashboard generation, status and
reports from a Prometheus API, benchmarks."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

_COMMANDS = {
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
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand module's ``main(argv)``."""
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack",
        description="Tell whether recurring jobs really ran: metrics, rules and dashboards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not args or args[0] not in _COMMANDS:
        parser.parse_args(args or ["--help"])
        return 2
    module = importlib.import_module(_COMMANDS[args[0]][0])
    try:
        result: int = module.main(args[1:])
    except BrokenPipeError:
        # The reader went away (`status --json | head`): stop quietly, without a traceback
        # from the interpreter flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
