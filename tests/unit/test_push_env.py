"""A Pushgateway alone is the only destination; ``OTEL_JOBTRACK_PUSHGATEWAY`` needs no code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_jobtrack import configure, track_run
from otel_jobtrack.exporters import pipeline


@pytest.fixture(autouse=True)
def reset_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("OTEL_METRICS_EXPORTER", "OTEL_JOBTRACK_PUSHGATEWAY", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(var, raising=False)
    pipeline.reset_for_tests()
    yield
    pipeline.reset_for_tests()


def test_pushgateway_without_exporters_sets_up_no_otlp() -> None:
    exporters = configure(pushgateway="127.0.0.1:9")
    assert exporters.exporters == ("pushgateway",)
    assert exporters.meter_provider is None and exporters.instruments is None


def test_otel_metrics_exporter_still_adds_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    exporters = configure(pushgateway="127.0.0.1:9")
    assert exporters.exporters == ("otlp", "pushgateway")
    exporters.shutdown(timeout=0.5)


def test_environment_variable_selects_the_pushgateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_JOBTRACK_PUSHGATEWAY", "http://127.0.0.1:9")
    exporters = configure()
    assert exporters.exporters == ("pushgateway",)
    assert exporters.pushgateway == "http://127.0.0.1:9"


def test_environment_variable_configures_at_the_first_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_JOBTRACK_PUSHGATEWAY", "127.0.0.1:9")
    assert pipeline.current() is None
    with track_run("env.push", kind="cron"):
        pass
    current = pipeline.current()
    assert current is not None and current.exporters == ("pushgateway",)


def test_a_bad_environment_value_never_breaks_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_JOBTRACK_PUSHGATEWAY", "ftp://nope")
    with track_run("env.push.bad", kind="cron") as run:
        pass
    assert run.state == "success" and pipeline.current() is None
