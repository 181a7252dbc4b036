"""The checked-in rules, dashboards and runbook, as shipped with the package.

The repository's top-level ``alerts/``, ``dashboards/`` and ``docs/runbook.md`` are the only
copy kept by hand. The wheel gets them under ``otel_jobtrack/_shipped/`` from a build step
(``setup.py``, which copies :data:`SHIPPED` at build time), so a user with no extras can write
the default rules and dashboards (``otel-jobtrack rules``/``dashboards --output-dir``) and read
the runbook (``otel-jobtrack runbook``). From a source checkout or an unpacked sdist (an
editable install, the tests) the top-level files themselves are read.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

SHIPPED: Final = ("alerts", "dashboards", "docs/runbook.md")
"""Paths, relative to the repository root, copied into the package at build time
(``setup.py`` holds the same tuple; a test compares them)."""

PACKAGE_DIR: Final = "_shipped"
"""Folder inside the ``otel_jobtrack`` package that holds the copies in a wheel."""

RUNBOOK: Final = "docs/runbook.md"

REPOSITORY_URL: Final = "https://github.com/otel-jobtrack/otel-jobtrack"
"""The project's ``Repository`` URL (``[project.urls]`` in pyproject.toml; a test compares)."""


def doc_url(path: str) -> str:
    """Where a file of the repository is published, e.g. ``docs/runbook.md``: links in the
    shipped files must work wherever they are copied, outside any checkout."""
    return f"{REPOSITORY_URL}/blob/main/{path}"


def root() -> Traversable | None:
    """Where the shipped files are: the package's copy in a wheel, else the source tree."""
    packaged = importlib.resources.files("otel_jobtrack").joinpath(PACKAGE_DIR)
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2]
    if all((source / rel).exists() for rel in SHIPPED):
        return source
    return None


def files(folder: str) -> dict[str, str]:
    """Every shipped file under ``folder`` (``alerts`` or ``dashboards``): relative path ->
    text. Empty when this installation has none."""
    base = root()
    if base is None:
        return {}
    found: dict[str, str] = {}
    _collect(base.joinpath(folder), "", found)
    return dict(sorted(found.items()))


def _collect(node: Traversable, prefix: str, out: dict[str, str]) -> None:
    if not node.is_dir():
        return
    for child in node.iterdir():
        rel = prefix + child.name
        if child.is_dir():
            if child.name != "__pycache__":
                _collect(child, rel + "/", out)
        elif child.is_file():
            out[rel] = child.read_text(encoding="utf-8")


def runbook() -> str | None:
    """The runbook's Markdown, or ``None`` when this installation has none."""
    base = root()
    if base is None:
        return None
    node = base.joinpath(*RUNBOOK.split("/"))
    return node.read_text(encoding="utf-8") if node.is_file() else None
