"""``otel-jobtrack run`` arguments and the resources file, without running backends."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_jobtrack.tools.run_command import parse_duration, read_resources
from tests.backends import REPO_ROOT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1x", "d1", "1d 2h", "-5m", "1.5.2h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="bad duration"):
        parse_duration(text)


def test_resources_file_sums_numbers_and_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "resources"
    path.write_text("3\n\n4\n2.5\nmany\n-1\nnan\n")
    assert read_resources(str(path)) == (9.5, 3)
    assert read_resources(str(tmp_path / "missing")) == (0, 0)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "otel_jobtrack", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--job", "x", "--kind", "cron"], "give the command to run after --"),
        (["--job", "x", "--kind", "daily", "--", "true"], "unknown job kind"),
        (["--job", "", "--kind", "cron", "--", "true"], "job name must not be empty"),
        (["--job", "x", "--kind", "cron", "--cron", "61 * * * *", "--", "true"], "outside"),
        (["--job", "x", "--kind", "cron", "--every", "1d", "--cron", "* * * * *"], "not allowed"),
        (["--job", "x", "--kind", "cron", "--limited-exit-code", "0", "--", "true"], "1-255"),
    ],
)
def test_mistakes_are_refused_before_running(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr


def test_without_a_destination_the_command_still_runs_and_says_so() -> None:
    result = cli("--job", "x.y", "--kind", "cron", "--", "sh", "-c", "echo hi; exit 4")
    assert result.returncode == 4 and result.stdout == "hi\n"
    assert "no destination" in result.stderr
