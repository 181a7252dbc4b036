"""Default job names of scripts: named after the script, never ``__main__``, never shared."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_jobtrack._core.naming import default_job_name, main_module_name
from tests.backends import REPO_ROOT

SCRIPT = """
    from otel_jobtrack import tracked
    from otel_jobtrack.exporters.prometheus.app import COLLECTOR

    @tracked(kind="cron", every={every})
    def main():
        pass

    class Nightly:
        @tracked(kind="cron")
        def run(self):
            pass

    main()
    Nightly().run()
    names = sorted({{s.job_name for s in COLLECTOR.store.snapshot()}})
    print(" ".join(names))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


def test_two_scripts_get_their_own_names(tmp_path: Path) -> None:
    (tmp_path / "nightly_backup.py").write_text(textwrap.dedent(SCRIPT).format(every=86400))
    (tmp_path / "weekly_report.py").write_text(textwrap.dedent(SCRIPT).format(every=604800))
    nightly = _run(["nightly_backup.py"], tmp_path)
    weekly = _run([str(tmp_path / "weekly_report.py")], REPO_ROOT)
    assert (nightly.returncode, nightly.stderr) == (0, "")
    assert nightly.stdout.split() == ["nightly_backup.Nightly.run", "nightly_backup.main"]
    assert weekly.stdout.split() == ["weekly_report.Nightly.run", "weekly_report.main"]


def test_python_dash_m_uses_the_module_name(tmp_path: Path) -> None:
    package = tmp_path / "ops"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cleanup.py").write_text(textwrap.dedent(SCRIPT).format(every=60))
    (package / "__main__.py").write_text(textwrap.dedent(SCRIPT).format(every=60))
    as_module = _run(["-m", "ops.cleanup"], tmp_path)
    as_package = _run(["-m", "ops"], tmp_path)
    assert as_module.stdout.split() == ["ops.cleanup.Nightly.run", "ops.cleanup.main"]
    assert as_package.stdout.split() == ["ops.Nightly.run", "ops.main"]


def test_without_a_script_the_error_says_how_to_name_the_job(tmp_path: Path) -> None:
    result = _run(["-c", textwrap.dedent(SCRIPT).format(every=60)], tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: cannot derive a job name")
    assert "@tracked('nightly_backup.main', kind='cron')" in last


def test_functions_of_modules_keep_module_and_qualname() -> None:
    assert default_job_name(default_job_name) == "otel_jobtrack._core.naming.default_job_name"
    assert main_module_name()  # pytest itself runs from a script or a -m module


def test_a_callable_without_a_name_is_refused() -> None:
    class NoName:
        __module__ = "x"

        def __call__(self) -> None:
            pass

    with pytest.raises(ValueError, match="name the job explicitly"):
        default_job_name(NoName())
