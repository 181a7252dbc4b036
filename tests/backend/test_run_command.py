"""``otel-jobtrack run``: any command tracked into a real Pushgateway and a real VictoriaMetrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_jobtrack._core import contract as c
from tests.backends import REPO_ROOT, PushgatewayServer, VictoriaMetricsServer
from tests.helpers import value

CLI = [sys.executable, "-m", "otel_jobtrack"]
TRUE = ["--", "sh", "-c", "exit 0"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushgatewayServer]:
    server = PushgatewayServer(workdir=tmp_path_factory.mktemp("pushgateway"))
    server.start()
    yield server
    server.stop()


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    out["PYTHONPATH"] = str(REPO_ROOT)
    out.update(extra)
    return out


def run(
    gateway: PushgatewayServer, job: str, command: list[str], *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "run", "--job", job, "--kind", "cron", *options, "--", *command],
        env=env(OTEL_JOBTRACK_PUSHGATEWAY=gateway.url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def pushed(gateway: PushgatewayServer, name: str, job: str, **labels: str) -> float | None:
    return value(name, gateway.metrics_text(), job_name=job, **labels)


def test_output_and_status_unchanged_and_the_run_recorded(gateway: PushgatewayServer) -> None:
    file = '"$OTEL_JOBTRACK_RESOURCES_FILE"'
    script = f"echo out; echo err >&2; echo 3 >> {file}; echo 4 >> {file}"
    result = run(gateway, "cmd.ok", ["sh", "-c", script], "--every", "1d", "--grace", "1h")
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert pushed(gateway, c.RUNS_TOTAL, "cmd.ok", state="success") == 1
    assert pushed(gateway, c.RESOURCES_TOTAL, "cmd.ok") == 7
    assert pushed(gateway, c.EXPECTED_INTERVAL, "cmd.ok") == 86400
    assert pushed(gateway, c.GRACE, "cmd.ok") == 3600
    # Grouped under the job name.
    assert value(c.RUNS_TOTAL, gateway.metrics_text(), job="cmd.ok", state="success") == 1


@pytest.mark.parametrize(
    ("code", "state"), [(3, "failure"), (75, "limited"), (76, "limited"), (1, "failure")]
)
def test_exit_codes_map_to_states(gateway: PushgatewayServer, code: int, state: str) -> None:
    job = f"cmd.exit{code}"
    result = run(
        gateway,
        job,
        [sys.executable, "-c", f"raise SystemExit({code})"],
        "--limited-exit-code",
        "75",
        "--limited-exit-code",
        "76",
    )
    assert (result.returncode, result.stdout, result.stderr) == (code, "", "")
    assert pushed(gateway, c.RUNS_TOTAL, job, state=state) == 1
    other = "success" if state != "success" else "failure"
    assert not pushed(gateway, c.RUNS_TOTAL, job, state=other)


def test_a_command_killed_by_a_signal_fails_with_128_plus_n(gateway: PushgatewayServer) -> None:
    result = run(gateway, "cmd.killed", ["sh", "-c", "kill -9 $$"])
    assert result.returncode == 128 + signal.SIGKILL
    assert pushed(gateway, c.RUNS_TOTAL, "cmd.killed", state="failure") == 1


def test_a_missing_command_fails_with_127(gateway: PushgatewayServer) -> None:
    result = run(gateway, "cmd.missing", ["/nonexistent/backup.sh"])
    assert result.returncode == 127 and "command not found" in result.stderr
    assert pushed(gateway, c.RUNS_TOTAL, "cmd.missing", state="failure") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_signals_reach_the_command_once(
    gateway: PushgatewayServer, tmp_path: Path, sig: signal.Signals
) -> None:
    received = tmp_path / "received"
    child = (
        "import signal, sys, time\n"
        f"def on(n, f):\n    open({str(received)!r}, 'a').write(f'{{n}}\\n')\n"
        "    time.sleep(0.5)\n    sys.exit(40)\n"
        f"signal.signal({int(sig)}, on)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    job = f"cmd.signal{int(sig)}"
    proc = subprocess.Popen(
        [*CLI, "run", "--job", job, "--kind", "batch", "--", sys.executable, "-c", child],
        env=env(OTEL_JOBTRACK_PUSHGATEWAY=gateway.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (40, "", "")
    assert received.read_text() == f"{int(sig)}\n"  # exactly once
    assert pushed(gateway, c.RUNS_TOTAL, job, state="failure") == 1


def test_otlp_selected_by_the_standard_variables(tmp_path_factory: pytest.TempPathFactory) -> None:
    with VictoriaMetricsServer(workdir=tmp_path_factory.mktemp("vm")) as vm:
        result = subprocess.run(
            [
                *CLI,
                "run",
                "--job",
                "cmd.otlp",
                "--kind",
                "cron",
                "--tenant",
                "acme",
                "--every",
                "5m",
                "--",
                "sh",
                "-c",
                'echo 2 > "$OTEL_JOBTRACK_RESOURCES_FILE"',
            ],
            env=env(
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=vm.otlp_url,
                OTEL_SERVICE_NAME="cmd-otlp",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        vm.wait_for(f'{c.RUNS_TOTAL}{{job_name="cmd.otlp",tenant="acme",state="success"}} == 1')
        assert vm.query_value(f'{c.RESOURCES_TOTAL}{{job_name="cmd.otlp"}}') == 2
        assert vm.query_value(f'{c.EXPECTED_INTERVAL}{{job_name="cmd.otlp"}}') == 300


def test_delivery_is_bounded_by_the_export_timeout(tmp_path: Path) -> None:
    import socket

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)  # accepts connections, never answers
    port = hanging.getsockname()[1]
    try:
        started = time.monotonic()
        result = subprocess.run(
            [*CLI, "run", "--job", "cmd.hang", "--kind", "cron", "--export-timeout", "2", *TRUE],
            env=env(OTEL_JOBTRACK_PUSHGATEWAY=f"http://127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        hanging.close()
    assert result.returncode == 0 and result.stdout == ""
    assert elapsed < 2 + 8  # the timeout plus interpreter start, on a loaded machine
    assert "pushgateway" in result.stderr  # the failed delivery is said, once
