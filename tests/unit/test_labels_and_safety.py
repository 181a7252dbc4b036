"""Definition-time errors, run-time tenant normalisation, isolation of instrumentation bugs."""

from __future__ import annotations

import logging
import math
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_jobtrack import Job, track_run
from otel_jobtrack._core.cadence import cron_max_interval
from otel_jobtrack._core.labels import MAX_TENANT_LENGTH, normalize_tenant
from otel_jobtrack._core.store import STORE
from tests.helpers import exposition, value

STRANGE_TENANTS = [
    42,
    3.5,
    b"bytes",
    object(),
    "x" * 10_000,
    "Zürich ☃ 東京",
    'quo"te',
    "new\nline\r\ttab",
    "back\\slash",
    "\udcff lone surrogate",
    "",
    "   ",
    "\x00\x1b[31m",
]


@pytest.mark.parametrize("tenant", STRANGE_TENANTS, ids=lambda t: repr(t)[:30])
def test_strange_tenants_never_raise_and_stay_valid(tenant: object) -> None:
    with track_run("strange", kind="schedule", tenant=tenant) as run:
        run.add_resources()
    label = run.tenant
    assert isinstance(label, str) and label
    assert len(label) <= MAX_TENANT_LENGTH
    assert label.isprintable()
    label.encode("utf-8")
    families = {f.name: f for f in text_string_to_metric_families(exposition())}
    tenants = {s.labels["tenant"] for s in families["jobtrack_runs"].samples}
    assert label in tenants


def test_unprintable_object_tenant() -> None:
    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    assert normalize_tenant(Evil()) == "unknown"
    assert normalize_tenant(None) == "system"
    assert normalize_tenant(7) == "7"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_name": "", "kind": "cron"}, "empty"),
        ({"job_name": "x", "kind": "weekly"}, "unknown job kind"),
        ({"job_name": 5, "kind": "cron"}, "must be a string"),
        ({"job_name": "a\nb", "kind": "cron"}, "control"),
        ({"job_name": "x" * 300, "kind": "cron"}, "longer than"),
        ({"job_name": "x", "kind": "cron", "every": -5}, "positive"),
        ({"job_name": "x", "kind": "cron", "every": 0}, "positive"),
        ({"job_name": "x", "kind": "cron", "every": "5m"}, "seconds or a timedelta"),
        ({"job_name": "x", "kind": "cron", "max_runtime": math.inf}, "finite"),
        ({"job_name": "x", "kind": "cron", "cron": "61 * * * *"}, "outside"),
        ({"job_name": "x", "kind": "cron", "cron": "* * *"}, "5 fields"),
        ({"job_name": "x", "kind": "cron", "cron": "0 0 31 2 *"}, "never fires"),
        ({"job_name": "x", "kind": "cron", "limited_exceptions": (int,)}, "exception types"),
    ],
)
def test_bad_definitions_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Job(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        track_run(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "3", None, True])
def test_bad_resource_counts_raise(bad: object) -> None:
    with track_run("res", kind="resource") as run, pytest.raises(ValueError, match="resources"):
        run.add_resources(bad)  # type: ignore[arg-type]
    assert run.resources == 0


def test_conflicting_redefinition_raises() -> None:
    track_run("cadenced", kind="cron", every=60)
    track_run("cadenced", kind="cron")  # no options: reuses the definition
    track_run("cadenced", kind="cron", every=timedelta(seconds=60))  # same cadence
    with pytest.raises(ValueError, match="already defined"):
        track_run("cadenced", kind="cron", every=120)


@pytest.mark.parametrize(
    ("expr", "hours"),
    [
        ("*/5 * * * *", 5 / 60),
        ("@hourly", 1),
        ("0 9 * * mon-fri", 72),
        ("0 0 1 * *", 31 * 24),
        ("15 3 * * 0", 7 * 24),
        ("0 0,12 * * *", 12),
        ("0 0 1,15 * 1", 7 * 24),
        ("0 0 * * 7", 168),
    ],
)
def test_cron_max_interval(expr: str, hours: float) -> None:
    assert cron_max_interval(expr) == pytest.approx(hours * 3600)


def test_cadence_is_exported() -> None:
    with track_run(
        "nightly", kind="cron", cron="0 2 * * *", grace=600, max_runtime=timedelta(minutes=30)
    ):
        pass
    assert value("jobtrack_job_expected_interval_seconds", job_name="nightly") == 86400
    assert value("jobtrack_job_grace_seconds", job_name="nightly") == 600
    assert value("jobtrack_job_max_runtime_seconds", job_name="nightly") == 1800


def test_broken_store_never_breaks_the_job(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(STORE, "finish", broken)
    results = []
    with caplog.at_level(logging.WARNING, logger="otel_jobtrack"):
        for i in range(50):
            with track_run("fragile", kind="resource") as run:
                run.add_resources()
                results.append(i)
        with pytest.raises(KeyError), track_run("fragile", kind="resource"):
            raise KeyError("the job's own error still propagates")
    assert results == list(range(50))
    assert run.state == "success"
    warnings = [r for r in caplog.records if r.name == "otel_jobtrack"]
    assert len(warnings) == 1  # logged once, not once per run
    monkeypatch.setattr(STORE, "start", broken)
    with track_run("fragile", kind="resource") as run:
        pass
    assert run.state == "success"
    monkeypatch.undo()
    assert value("jobtrack_instrumentation_errors_total", where="run finish") == 51
    assert value("jobtrack_instrumentation_errors_total", where="run start") == 1


def test_broken_sink_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        locked = False

        def run_started(self, *args: object) -> None:
            raise RuntimeError("exporter bug")

        def run_finished(self, *args: object) -> None:
            raise RuntimeError("exporter bug")

    sink = Broken()
    STORE.add_sink(sink)
    try:
        with track_run("sinky", kind="resource") as run:
            run.add_resources(2)
    finally:
        STORE.remove_sink(sink)
    assert value("jobtrack_runs_total", job_name="sinky", state="success") == 1
    assert value("jobtrack_resources_total", job_name="sinky") == 2
    assert value("jobtrack_instrumentation_errors_total", where="exporter Broken") == 2
