"""Cron scripts pushing to a real Pushgateway: no OTLP noise, no code, no shared names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.backends import REPO_ROOT, PushgatewayServer
from tests.helpers import value

SCRIPT = """
    from otel_jobtrack import configure, tracked
    {configure}

    @tracked(kind="cron", every={every})
    def main():
        print("done")

    main()
"""


def run(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    full.update(env, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, str(path)], env=full, capture_output=True, text=True, timeout=60
    )


def test_scripts_push_quietly_under_their_own_names(
    pushgateway: PushgatewayServer, tmp_path: Path
) -> None:
    nightly = tmp_path / "nightly_backup.py"
    nightly.write_text(
        textwrap.dedent(SCRIPT).format(
            configure=f"configure(pushgateway={pushgateway.url!r})", every=86400
        )
    )
    weekly = tmp_path / "weekly_report.py"
    weekly.write_text(textwrap.dedent(SCRIPT).format(configure="", every=604800))

    # configure(pushgateway=...) alone: nothing on stderr (no OTLP attempt on localhost:4318).
    first = run(nightly, {})
    # No code at all: the environment variable selects the Pushgateway.
    second = run(weekly, {"OTEL_JOBTRACK_PUSHGATEWAY": pushgateway.url})
    assert (first.returncode, first.stdout, first.stderr) == (0, "done\n", "")
    assert (second.returncode, second.stdout, second.stderr) == (0, "done\n", "")

    text = pushgateway.metrics_text()
    for job, interval in (("nightly_backup", 86400.0), ("weekly_report", 604800.0)):
        labels = {"job": job, "job_name": f"{job}.main", "kind": "cron"}
        assert value("jobtrack_job_expected_interval_seconds", text, **labels) == interval
        assert value("jobtrack_runs_total", text, state="success", **labels) == 1.0
    assert "__main__" not in text
