"""The packaging declarations agree with the code, cheaply (no build): what ``setup.py`` ships,
the project URL the links use, the extras named in messages, the lowest tested versions, the
README as a package index shows it, and the runbook command. ``tests/packaging`` checks the
built sdist and wheel themselves."""

from __future__ import annotations

import ast
import re
import runpy
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from otel_jobtrack._core import extras
from otel_jobtrack.generators import rules, shipped
from otel_jobtrack.tools import runbook
from tests.backends import REPO_ROOT

PYPROJECT: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT: dict[str, Any] = PYPROJECT["project"]
SETUP = REPO_ROOT / "setup.py"
LOWEST = REPO_ROOT / "scripts" / "lowest-versions.txt"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def setup_module_globals() -> dict[str, Any]:
    """``setup.py``'s functions and constants, without running ``setup()``."""
    return runpy.run_path(str(SETUP), run_name="setup_for_tests")


def test_the_build_step_ships_what_the_package_reads() -> None:
    tree = ast.parse(SETUP.read_text())
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("SHIPPED", "PACKAGE_DIR")
    }
    assert values["SHIPPED"] == shipped.SHIPPED
    assert values["PACKAGE_DIR"] == f"otel_jobtrack/{shipped.PACKAGE_DIR}"
    for rel in shipped.SHIPPED:
        assert (REPO_ROOT / rel).exists(), rel


def test_from_a_checkout_the_shipped_files_are_the_top_level_ones() -> None:
    assert Path(str(shipped.root())) == REPO_ROOT
    assert shipped.runbook() == RUNBOOK.read_text()
    alerts = shipped.files("alerts")
    assert alerts["jobtrack-rules.yaml"] == (REPO_ROOT / "alerts/jobtrack-rules.yaml").read_text()
    assert set(alerts) == {
        p.relative_to(REPO_ROOT / "alerts").as_posix()
        for p in (REPO_ROOT / "alerts").rglob("*")
        if p.is_file()
    }


def test_links_use_the_project_repository_url() -> None:
    assert PROJECT["urls"]["Repository"] == shipped.REPOSITORY_URL
    assert rules.DEFAULT_CONFIG.runbook_url == f"{shipped.REPOSITORY_URL}/blob/main/docs/runbook.md"
    for name in rules.ALERT_NAMES:
        anchor = rules.runbook_anchor(name)
        assert runbook.section(RUNBOOK.read_text(), anchor) is not None, anchor


def test_every_extra_named_in_a_message_is_declared() -> None:
    declared = set(PROJECT["optional-dependencies"])
    assert set(extras.MODULE_EXTRAS.values()) <= declared
    for extra in ("otlp", "otlp-grpc", "rules", "dashboards"):
        assert extra in declared


def test_the_core_install_is_what_a_prometheus_user_needs() -> None:
    names = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert names == {"prometheus-client", "wrapt"}


def _requirements() -> list[Requirement]:
    groups = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()]
    return [Requirement(r) for group in groups for r in group]


def test_the_lowest_versions_file_pins_every_lower_bound() -> None:
    pins = {}
    for line in LOWEST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    lower: dict[str, Version] = {}
    for req in _requirements():
        for spec in req.specifier:
            if spec.operator == ">=":
                lower[canonicalize_name(req.name)] = Version(spec.version)
    runtime = {
        canonicalize_name(Requirement(r).name)
        for extra in ("otlp", "otlp-grpc", "rules")
        for r in PROJECT["optional-dependencies"][extra]
    } | {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    for name in runtime:
        assert pins.get(name) == lower[name], f"{name}: pin {lower[name]} in {LOWEST.name}"
    for name, version in pins.items():
        assert lower.get(name) == version, f"{name}=={version} is no lower bound in pyproject"


def test_license_metadata_is_spdx_with_the_full_text() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text
    assert "license" not in PROJECT.get("classifiers", [])  # superseded by the expression
    requires = PYPROJECT["build-system"]["requires"]
    assert requires == ["setuptools>=77"]  # the first setuptools with PEP 639


def test_changelog_has_the_release_and_an_unreleased_section() -> None:
    text = (REPO_ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0].startswith("Unreleased")
    assert any(h.startswith("0.1.0") for h in headings)
    assert PROJECT["urls"]["Changelog"].endswith("/CHANGELOG.md")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.targets.append(value)


def relative_links(markdown: str) -> list[str]:
    """Link and image targets of ``markdown`` rendered as the package index renders it."""
    import readme_renderer.markdown

    html = readme_renderer.markdown.render(markdown)
    assert html is not None, "the package index could not render the long description"
    parser = _Links()
    parser.feed(html)
    assert parser.targets, "no links at all: the check would prove nothing"
    return [t for t in parser.targets if not re.match(r"^(https?:|mailto:|#)", t)]


def test_the_long_description_has_only_absolute_links() -> None:
    setup = setup_module_globals()
    readme = (REPO_ROOT / "README.md").read_text()
    assert relative_links(readme), "the README has relative links: the rewrite is needed"
    description = setup["long_description"]()
    assert relative_links(description) == []
    assert f"{shipped.REPOSITORY_URL}/blob/main/docs/otlp.md" in description


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[a](docs/x.md)", "[a](https://h/r/blob/main/docs/x.md)"),
        ("[a](./docs/x.md#part)", "[a](https://h/r/blob/main/docs/x.md#part)"),
        ("![img](docs/a.png)", "![img](https://h/r/raw/main/docs/a.png)"),
        ("[a](https://example.org/x)", "[a](https://example.org/x)"),
        ("[a](#quickstart)", "[a](#quickstart)"),
        ("[a](mailto:x@example.org)", "[a](mailto:x@example.org)"),
    ],
)
def test_relative_links_are_made_absolute(markdown: str, expected: str) -> None:
    assert setup_module_globals()["absolute_links"](markdown, "https://h/r/") == expected


def otel_jobtrack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_jobtrack", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runbook_command_prints_the_runbook_and_each_alerts_section() -> None:
    text = RUNBOOK.read_text()
    whole = otel_jobtrack("runbook")
    assert whole.returncode == 0 and whole.stdout == text
    listed = otel_jobtrack("runbook", "--list").stdout.split()
    assert listed == list(rules.ALERT_NAMES)
    one = otel_jobtrack("runbook", "jobtrackrunstuck")  # the anchor a runbook_url ends with
    assert one.returncode == 0
    assert one.stdout.startswith("## JobTrackRunStuck\n")
    assert "## " not in one.stdout[3:] and one.stdout.strip() in text
    unknown = otel_jobtrack("runbook", "NoSuchAlert")
    assert unknown.returncode == 2 and "JobTrackMissedRun" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
