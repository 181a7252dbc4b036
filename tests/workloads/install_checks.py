"""What a user of an installed otel-jobtrack does first, run in the interpreter under test.

Used by the unit tests (this checkout, optional packages hidden with ``WITHOUT=yaml,...``) and
by the packaging tests (a fresh virtualenv holding only the wheel and its dependencies). It
imports nothing but otel-jobtrack, its core dependencies and the standard library.

``python install_checks.py serve``: import the package (with whatever environment it is
given), track three runs (one failing), serve ``/metrics`` on a free loopback port, scrape it
and print one JSON line: the runs by state, the self-metric's counts by ``where`` and whether
multiprocess mode is on.

``python install_checks.py configure EXPORTERS [PROTOCOL]``: call ``configure()`` and print
what it started and the self-metric's counts.

``python install_checks.py cli ARGS...``: run ``otel-jobtrack ARGS...``.
"""

from __future__ import annotations

import json
import os
import sys

for _name in filter(None, os.environ.get("WITHOUT", "").split(",")):
    sys.modules[_name] = None  # type: ignore[assignment]  # as if not installed


def _scrape() -> dict[str, object]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from otel_jobtrack import start_metrics_server

    server, _ = start_metrics_server(port=0, addr="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    runs: dict[str, float] = {}
    problems: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jobtrack_runs_total" and sample.labels["job_name"] == "check.job":
                runs[sample.labels["state"]] = sample.value
            elif sample.name == "jobtrack_instrumentation_errors_total":
                problems[sample.labels["where"]] = sample.value
    return {"runs": runs, "problems": problems}


def serve() -> dict[str, object]:
    from otel_jobtrack import track_run
    from otel_jobtrack.exporters.prometheus import multiprocess

    for fail in (False, True, False):
        try:
            with track_run("check.job", kind="cron"):
                if fail:
                    raise RuntimeError("the job's own failure")
        except RuntimeError:
            pass
    return {**_scrape(), "multiprocess": multiprocess.enabled()}


def configure(exporters: str, protocol: str | None = None) -> dict[str, object]:
    import otel_jobtrack

    configured = otel_jobtrack.configure(
        exporters, protocol=protocol, endpoint="http://127.0.0.1:9", exit_timeout=1
    )
    with otel_jobtrack.track_run("check.job", kind="cron"):
        pass
    return {"exporters": list(configured.exporters), **_scrape()}


def main(argv: list[str]) -> int:
    if argv[0] == "cli":
        from otel_jobtrack.tools.cli import main as cli

        return cli(argv[1:])
    result = serve() if argv[0] == "serve" else configure(*argv[1:])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
