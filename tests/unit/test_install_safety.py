"""Nothing in the environment breaks ``import otel_jobtrack`` or the command, and a missing
optional package ends in one line naming the extra to install, never a traceback.

Each case runs ``tests/workloads/install_checks.py`` in a fresh interpreter of this checkout;
optional packages are hidden from it (``WITHOUT=``) as if they were not installed. The
packaging tests run the same workload in a virtualenv that really has only the wheel.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backends import REPO_ROOT

WORKLOAD = REPO_ROOT / "tests" / "workloads" / "install_checks.py"
RUNS = {"success": 2.0, "failure": 1.0, "limited": 0.0}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The workload in a new interpreter, with only ``env`` of the OTEL/multiprocess settings."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PROMETHEUS_MULTIPROC_DIR", "WITHOUT"))
    }
    full.update(env)
    return subprocess.run(
        [sys.executable, str(WORKLOAD), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def log_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def unwritable_dir(tmp_path: Path) -> str:
    """A directory this process cannot create files in (root ignores permission bits)."""
    if os.geteuid() != 0:
        path = tmp_path / "read-only"
        path.mkdir()
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return str(path)
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to get a directory that root cannot write to")
    return "/proc"


@pytest.mark.parametrize("where", ["missing", "file", "unwritable"])
def test_a_bad_multiprocess_dir_is_logged_once_counted_and_own_totals_are_served(
    tmp_path: Path, where: str
) -> None:
    directory = {
        "missing": str(tmp_path / "not-there"),
        "file": str(tmp_path / "a-file"),
        "unwritable": "",
    }[where] or unwritable_dir(tmp_path)
    (tmp_path / "a-file").write_text("")
    proc = run("serve", PROMETHEUS_MULTIPROC_DIR=directory)
    out = result(proc)
    assert out["runs"] == RUNS  # the process works on, single-process
    assert out["multiprocess"] is False
    assert out["problems"] == {"multiprocess setup": 1.0}
    lines = log_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "multiprocess mode is off" in lines[0] and directory in lines[0]


def test_a_working_multiprocess_dir_is_still_used(tmp_path: Path) -> None:
    proc = run("serve", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = result(proc)
    assert out["multiprocess"] is True and out["runs"] == RUNS and out["problems"] == {}
    assert list(tmp_path.glob("counter_*-jobtrack.db")), "no multiprocess files written"
    assert log_lines(proc) == []


def test_bad_jobtrack_variables_are_ignored_logged_and_counted() -> None:
    proc = run(
        "serve",
        OTEL_JOBTRACK_MAX_TENANTS_PER_JOB="many",
        OTEL_JOBTRACK_MAX_JOB_NAMES="0",
    )
    out = result(proc)
    assert out["runs"] == RUNS
    assert out["problems"] == {"environment": 2.0}
    lines = log_lines(proc)
    assert len(lines) == 2, proc.stderr
    assert "OTEL_JOBTRACK_MAX_TENANTS_PER_JOB" in lines[0]
    assert "OTEL_JOBTRACK_MAX_JOB_NAMES" in lines[1]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["runbook", "--list"]])
def test_the_command_starts_whatever_the_environment(tmp_path: Path, args: list[str]) -> None:
    proc = run(
        "cli",
        *args,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "not-there"),
        OTEL_JOBTRACK_MAX_JOB_NAMES="-1",
        OTEL_METRICS_EXPORTER="otlp",
        WITHOUT="opentelemetry,yaml,grafana_foundation_sdk",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip()


def test_version_is_the_package_version() -> None:
    import otel_jobtrack

    proc = run("cli", "--version")
    assert proc.stdout.strip() == f"otel-jobtrack {otel_jobtrack.__version__}"


@pytest.mark.parametrize(
    ("env", "extra", "where"),
    [
        ({"OTEL_METRICS_EXPORTER": "otlp", "WITHOUT": "opentelemetry"}, "otlp", "otlp setup"),
        (
            {
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "WITHOUT": "opentelemetry.exporter.otlp.proto.grpc",  # only [otlp] installed
            },
            "otlp-grpc",
            "otlp setup",
        ),
        ({"OTEL_METRICS_EXPORTER": "console", "WITHOUT": "opentelemetry"}, "otlp", "console setup"),
    ],
)
def test_an_exporter_without_its_package_is_one_log_line_and_the_job_runs(
    env: dict[str, str], extra: str, where: str
) -> None:
    proc = run("serve", **env)
    out = result(proc)
    assert out["runs"] == RUNS
    assert out["problems"] == {where: 1.0}
    lines = log_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f"pip install 'otel-jobtrack[{extra}]'" in lines[0]


def test_configure_without_the_packages_starts_what_it_can() -> None:
    proc = run(
        "configure",
        "otlp,console,prometheus",
        WITHOUT="opentelemetry",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT="0",
    )
    out = result(proc)
    assert out["exporters"] == ["prometheus"]
    assert out["problems"] == {"otlp setup": 1.0, "console setup": 1.0}
    assert len(log_lines(proc)) == 2, proc.stderr


@pytest.mark.parametrize(
    ("args", "without", "extra"),
    [
        (["rules", "--print-config"], "yaml", "rules"),
        (["rules", "--set", "failure_ratio=0.2"], "yaml", "rules"),
        (["rules", "--selector", 'job="billing"'], "yaml", "rules"),
        (["dashboards", "--datasource", "prom"], "grafana_foundation_sdk", "dashboards"),
        (["bench", "--quick"], "opentelemetry", "otlp"),
    ],
)
def test_a_command_without_its_extra_says_which_to_install_in_one_line(
    tmp_path: Path, args: list[str], without: str, extra: str
) -> None:
    out = tmp_path / "out"
    where = [] if args[0] == "bench" else ["--output-dir", str(out)]
    proc = run("cli", *args, *where, WITHOUT=without)
    assert proc.returncode == 2, proc.stderr
    assert log_lines(proc) == [line for line in log_lines(proc) if extra in line]
    assert len(log_lines(proc)) == 1, proc.stderr
    assert f"pip install 'otel-jobtrack[{extra}]'" in proc.stderr
    assert proc.stdout == "" and not out.exists()


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    ("command", "folder", "without"),
    [("rules", "alerts", "yaml"), ("dashboards", "dashboards", "grafana_foundation_sdk")],
)
def test_default_output_is_the_shipped_files_with_or_without_the_extra(
    tmp_path: Path, command: str, folder: str, without: str
) -> None:
    shipped = tree(REPO_ROOT / folder)
    copied = run("cli", command, "--output-dir", str(tmp_path / "copied"), WITHOUT=without)
    assert copied.returncode == 0, copied.stderr
    assert len(log_lines(copied)) == 1 and f"otel-jobtrack[{command}]" in copied.stderr
    generated = run("cli", command, "--output-dir", str(tmp_path / "generated"))
    assert generated.returncode == 0, generated.stderr
    assert tree(tmp_path / "copied") == shipped
    assert tree(tmp_path / "generated") == shipped
    for variant in ("copied", "generated"):
        check = run("cli", command, "--check", "--output-dir", str(tmp_path / variant))
        assert check.returncode == 0, check.stderr
    stale = tmp_path / "copied" / sorted(shipped)[-1]
    stale.write_text(stale.read_text() + "\n")
    copied_dir = str(tmp_path / "copied")
    check = run("cli", command, "--check", "--output-dir", copied_dir, WITHOUT=without)
    assert check.returncode == 1 and "stale:" in check.stderr


def test_custom_settings_leave_out_the_shipped_promtool_tests(tmp_path: Path) -> None:
    proc = run("cli", "rules", "--set", "failure_ratio=0.2", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "tests").exists()  # they test the default thresholds
    assert (tmp_path / "jobtrack-rules.yaml").is_file()
