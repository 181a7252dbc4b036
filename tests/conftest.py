"""Shared fixtures: a clean store per test, and the real-backend harness as a plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_jobtrack import errors
from otel_jobtrack.run import reset_for_tests

pytest_plugins = ["tests.backends"]


@pytest.fixture(autouse=True)
def clean_store() -> Iterator[None]:
    """Every test starts with no jobs, no totals and no logged problems."""
    reset_for_tests()
    errors.reset_for_tests()
    yield
    reset_for_tests()
    errors.reset_for_tests()
