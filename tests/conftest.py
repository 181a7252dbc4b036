"""Shared fixtures: a clean store per test, and the real-backend harness as a plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_jobtrack._core import errors
from otel_jobtrack._core.run import reset_for_tests

pytest_plugins = ["tests.backends"]

_FOLDER_MARKERS = {"unit": "unit", "backend": "backend", "packaging": "packaging"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-doc-images",
        action="store_true",
        default=False,
        help="write the screenshots the tests render into docs/images/ (README pictures)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder says what a test is: ``tests/unit``, ``tests/backend`` (real servers) or
    ``tests/packaging`` (built distributions in fresh virtualenvs)."""
    for item in items:
        folder = item.path.parent.name
        marker = _FOLDER_MARKERS.get(folder)
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def clean_store() -> Iterator[None]:
    """Every test starts with no jobs, no totals and no logged problems."""
    reset_for_tests()
    errors.reset_for_tests()
    yield
    reset_for_tests()
    errors.reset_for_tests()
