"""scripts/install-system-packages: quiet when everything is there, clear about its usage."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.backends import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install-system-packages"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_packages_are_a_list_with_the_programs_the_tests_drive() -> None:
    text = SCRIPT.read_text()
    block = text.split("PACKAGES=(", 1)[1].split(")", 1)[0]
    assert [line.strip() for line in block.strip().splitlines()] == ["chromium", "redis-server"]


def test_usage() -> None:
    assert "chromium" in _run("--help").stdout
    wrong = _run("--nope")
    assert wrong.returncode == 2 and "unknown argument: --nope" in wrong.stderr


def test_nothing_to_do_is_fast_and_silent() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian-like machine")
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "chromium"], capture_output=True, text=True
    )
    if installed.stdout != "install ok installed":
        pytest.skip("chromium is not installed here (scripts/test installs it)")
    done = _run()
    assert done.returncode == 0
    assert done.stdout == done.stderr == ""
