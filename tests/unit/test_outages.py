"""Destinations down (closed port) or hanging (accepts, never answers): jobs are unaffected.

Each scenario is a real script in its own process: it configures export to the broken
destination, runs 50 jobs plus one failing job, lingers through a few export cycles and
exits. It must produce the jobs' results unchanged, run them at full speed (export happens
off the job's path), exit within the configured exit timeout (plus generous slack for process
start-up on a busy machine), and log the failure a bounded number of times.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.backends import REPO_ROOT, free_port

RUNS = 50
EXIT_TIMEOUT = 2.0
SLACK = 5.0
"""Seconds allowed beyond the exit timeout: interpreter teardown on a loaded machine."""


class HangingServer:
    """Accepts TCP connections and never reads or answers: a wedged collector or gateway."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


SCRIPT = """
    import json, time
    import otel_jobtrack
    from otel_jobtrack._core import errors

    otel_jobtrack.configure(**json.loads({settings!r}))

    def job(i):
        time.sleep(0.01)
        return i * 2

    results = []
    started = time.monotonic()
    for i in range({runs}):
        with otel_jobtrack.track_run("outage.job", kind="resource", tenant=f"t{{i % 3}}") as run:
            results.append(job(i))
            run.add_resources(1)
    try:
        with otel_jobtrack.track_run("outage.job", kind="resource"):
            raise KeyError("expected")
    except KeyError as exc:
        failure = repr(exc)
    loop = time.monotonic() - started
    time.sleep(1.5)  # several export cycles fail meanwhile
    print(json.dumps({{
        "sum": sum(results), "failure": failure, "loop": loop,
        "export_errors": errors.export_error_counts(), "end": time.time(),
    }}), flush=True)
"""


@dataclass
class Outcome:
    returncode: int
    result: dict[str, Any]
    stderr: str
    exit_delay: float
    """Seconds from the script's last line to the process being gone."""


def scenarios(closed: int, hanging: int) -> dict[str, dict[str, Any]]:
    fast = {"export_interval": 0.2, "exit_timeout": EXIT_TIMEOUT}
    return {
        "otlp-http-refused": {
            "exporters": "otlp",
            "endpoint": f"http://127.0.0.1:{closed}/v1/metrics",
            "timeout": 0.5,
            **fast,
        },
        # The exporter's own timeout (10 s) is longer than the exit timeout on purpose.
        "otlp-http-hanging": {
            "exporters": "otlp",
            "endpoint": f"http://127.0.0.1:{hanging}/v1/metrics",
            **fast,
        },
        "otlp-grpc-refused": {
            "exporters": "otlp",
            "protocol": "grpc",
            "endpoint": f"http://127.0.0.1:{closed}",
            "timeout": 0.5,
            **fast,
        },
        "otlp-grpc-hanging": {
            "exporters": "otlp",
            "protocol": "grpc",
            "endpoint": f"http://127.0.0.1:{hanging}",
            **fast,
        },
        "pushgateway-refused": {
            "exporters": "none",
            "pushgateway": f"http://127.0.0.1:{closed}",
            "exit_timeout": EXIT_TIMEOUT,
        },
        "pushgateway-hanging": {
            "exporters": "none",
            "pushgateway": f"http://127.0.0.1:{hanging}",
            "push_timeout": 10.0,
            "exit_timeout": EXIT_TIMEOUT,
        },
        # Both wedged at once: they share the exit timeout instead of adding up.
        "otlp-and-pushgateway-hanging": {
            "exporters": "otlp",
            "endpoint": f"http://127.0.0.1:{hanging}/v1/metrics",
            "pushgateway": f"http://127.0.0.1:{hanging}",
            "push_timeout": 10.0,
            **fast,
        },
    }


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome]]:
    """Run every scenario at once (they mostly wait), each in its own process."""
    hanging = HangingServer()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    results: dict[str, Outcome] = {}

    def run(name: str, settings: dict[str, Any]) -> None:
        code = textwrap.dedent(SCRIPT).format(settings=json.dumps(settings), runs=RUNS)
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = proc.communicate(timeout=120)
        gone = time.time()
        lines = stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        delay = gone - result["end"] if "end" in result else float("inf")
        results[name] = Outcome(proc.returncode, result, stderr, delay)

    threads = [
        threading.Thread(target=run, args=item)
        for item in scenarios(free_port(), hanging.port).items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    yield results
    hanging.close()


@pytest.mark.parametrize("name", list(scenarios(0, 0)))
def test_jobs_unaffected_and_exit_bounded(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.result["sum"] == sum(i * 2 for i in range(RUNS))
    assert outcome.result["failure"] == "KeyError('expected')"
    # A run that waited for an export would take the exporter's timeout (0.5-10 s) each.
    assert outcome.result["loop"] < SLACK
    print(f"{name}: exited {outcome.exit_delay:.2f}s after its last line")
    assert outcome.exit_delay < EXIT_TIMEOUT + SLACK
    # Logged, but not once per run nor per export cycle.
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 6, outcome.stderr
    if "refused" in name and name.startswith("otlp"):
        failures = outcome.result["export_errors"].get("otlp", 0)
        assert failures >= 3, outcome.result  # many failed cycles, yet few log lines
        assert sum("otel-jobtrack: export via otlp failed" in line for line in lines) == 1
