"""The ``otel-jobtrack`` command: tracked commands, demo workload, rules, dashboards, benchmarks."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
