"""Integration pieces that need no broker or server: definitions, cadences, states, imports."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from celery import Celery
from celery.schedules import crontab, schedule, solar

from otel_jobtrack import current_run
from otel_jobtrack._core import contract as c
from otel_jobtrack.integrations import celery as jt_celery
from otel_jobtrack.integrations.apscheduler import trigger_interval
from tests.backends import REPO_ROOT
from tests.helpers import value


def test_the_core_imports_no_framework() -> None:
    code = (
        "import sys, otel_jobtrack\n"
        "print(sorted(m for m in ('celery', 'apscheduler', 'gunicorn', 'redis') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("entry", "seconds"),
    [
        (30, 30),
        (timedelta(minutes=5), 300),
        (schedule(timedelta(hours=1)), 3600),
        (crontab(minute=0, hour=3), 86400),
        (crontab(minute="*/15"), 900),
        (crontab(minute=0, hour=9, day_of_week="mon-fri"), 3 * 86400),
        (crontab(minute=0, hour={1, 13}), 12 * 3600),
    ],
)
def test_beat_schedules_give_the_interval(entry: Any, seconds: float) -> None:
    beat = {"e": {"task": "t.x", "schedule": entry}}
    assert jt_celery.cadences_from_beat(beat) == {"t.x": seconds}


def test_beat_entries_without_a_fixed_interval_are_noted_and_skipped() -> None:
    notes: list[str] = []
    sun = object.__new__(solar)  # the real class; building one needs the ephem package
    beat = {
        "dawn": {"task": "t.dawn", "schedule": sun},
        "often": {"task": "t.x", "schedule": 60},
        "daily": {"task": "t.x", "schedule": crontab(minute=0, hour=0)},
    }
    assert jt_celery.cadences_from_beat(beat, notes.append) == {"t.x": 86400}
    assert len(notes) == 1 and "solar" in notes[0] and "t.dawn" in notes[0]


@pytest.mark.parametrize(
    ("trigger", "seconds"),
    [
        (IntervalTrigger(minutes=5), 300),
        (IntervalTrigger(seconds=30, jitter=5), 35),
        (CronTrigger(hour=3, minute=0), 86400),
        (CronTrigger(day_of_week="mon-fri", hour=9), 3 * 86400),
        (CronTrigger(day_of_week="0-4", hour=9), 3 * 86400),  # APScheduler: 0 is Monday
        (CronTrigger(second="*/10"), 10),
        (CronTrigger(second="5,50"), 45),
        (CronTrigger(day="last", hour=1), 31 * 86400),
        (DateTrigger(run_date="2030-01-01"), None),
    ],
)
def test_apscheduler_triggers_give_the_interval(trigger: Any, seconds: float | None) -> None:
    assert trigger_interval(trigger) == seconds


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": "ignore"}, "retry must be one of"),
        ({"default_kind": "daily"}, "unknown job kind"),
        ({"multiprocess": "on"}, "multiprocess must be"),
        ({"tasks": {"t.x": {"kind": "weekly"}}}, "unknown job kind"),
        ({"tasks": {"t.x": {"tenent": "x"}}}, "unknown option"),
        ({"tasks": {"t.x": {"every": 60, "cron": "* * * * *"}}}, "either every= or cron="),
        ({"tasks": {"t.x": {"retry": "success"}}}, "retry must be one of"),
        ({"exit_flush_timeout": 0}, "exit_flush_timeout"),
    ],
)
def test_celery_mistakes_fail_at_instrument_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jt_celery.instrument(Celery("bad"), **kwargs)


@pytest.fixture
def app() -> Any:
    app = Celery("unit", broker="memory://")
    app.conf.task_always_eager = True
    app.conf.beat_schedule = {"tick": {"task": "u.tick", "schedule": 5}}
    instrumentation = jt_celery.instrument(
        app, tenant="tenant_id", serve_metrics=False, tasks={"u.named": {"name": "billing.sync"}}
    )
    yield app
    instrumentation.uninstrument()


class Busy(Exception):
    pass


def test_eager_tasks_states_retries_and_current_run(app: Any) -> None:
    @app.task(shared=False, name="u.tick")
    def tick() -> None:
        current_run().add_resources(4)

    @app.task(shared=False, name="u.flaky", bind=True, max_retries=2, default_retry_delay=0)
    def flaky(self: Any, tenant_id: str) -> None:
        if self.request.retries < 2:
            raise self.retry()

    @app.task(shared=False, name="u.boom")
    def boom(tenant_id: str) -> None:
        raise RuntimeError("boom")

    @app.task(
        shared=False, name="u.busy", jobtrack={"limited_exceptions": (Busy,), "kind": "schedule"}
    )
    def busy() -> None:
        raise Busy()

    @app.task(shared=False, name="u.named")
    def named() -> None:
        pass

    tick.apply()
    flaky.apply(args=("acme",))
    boom.apply(args=("globex",))
    busy.apply()
    named.apply()
    assert value(c.RUNS_TOTAL, job_name="u.tick", kind="cron", state="success") == 1
    assert value(c.RESOURCES_TOTAL, job_name="u.tick") == 4
    assert value(c.EXPECTED_INTERVAL, job_name="u.tick") == 5
    flaky_labels = {"job_name": "u.flaky", "tenant": "acme", "kind": "resource"}
    assert value(c.RUNS_TOTAL, state="limited", **flaky_labels) == 2
    assert value(c.RUNS_TOTAL, state="success", **flaky_labels) == 1
    assert value(c.RUNS_TOTAL, state="failure", **flaky_labels) == 0
    assert value(c.RUNS_TOTAL, job_name="u.boom", tenant="globex", state="failure") == 1
    assert value(c.RUNS_TOTAL, job_name="u.busy", kind="schedule", state="limited") == 1
    assert value(c.RUNS_TOTAL, job_name="billing.sync", state="success") == 1


def test_retries_can_count_as_failures(app: Any) -> None:
    jt_celery.instrument(app, retry="failure", serve_metrics=False)

    @app.task(shared=False, name="u.flaky2", bind=True, max_retries=1, default_retry_delay=0)
    def flaky2(self: Any) -> None:
        if self.request.retries < 1:
            raise self.retry()

    flaky2.apply()
    assert value(c.RUNS_TOTAL, job_name="u.flaky2", state="failure") == 1
    assert value(c.RUNS_TOTAL, job_name="u.flaky2", state="success") == 1


def test_a_task_naming_a_missing_tenant_argument_stops_the_worker() -> None:
    app = Celery("strict", broker="memory://")

    @app.task(shared=False, name="u.strict", jobtrack={"tenant": "tenant_id"})
    def strict(account: str) -> None:
        pass

    instrumentation = jt_celery.instrument(app, serve_metrics=False)
    try:
        with pytest.raises(SystemExit, match="names no parameter"):
            instrumentation.on_worker_init(sender=None)
    finally:
        instrumentation.uninstrument()


def test_prefork_without_multiprocess_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = Celery("warn", broker="memory://")
    instrumentation = jt_celery.instrument(app, multiprocess="off", serve_metrics=False)
    worker = type("Worker", (), {"app": app, "pool_cls": "prefork"})()
    try:
        with caplog.at_level(logging.WARNING, logger="otel_jobtrack"):
            instrumentation.on_worker_init(sender=worker)
            instrumentation.on_worker_init(sender=worker)
    finally:
        instrumentation.uninstrument()
    warnings = [r.getMessage() for r in caplog.records if "prefork" in r.getMessage()]
    assert len(warnings) == 1 and "PROMETHEUS_MULTIPROC_DIR" in warnings[0]


def test_the_documented_python_setups_run(tmp_path: Any) -> None:
    """docs/integrations.md: each Python block imports and defines what it shows."""
    import re

    text = (REPO_ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    for block in blocks:
        compile(block, "docs/integrations.md", "exec")
    celery_setup = next(b for b in blocks if "instrument(\n    app" in b)
    namespace: dict[str, Any] = {"__name__": "docs_celery"}
    exec(compile(celery_setup, "docs/integrations.md", "exec"), namespace)
    app = namespace["app"]
    app.conf.task_always_eager = True
    namespace["schedule_tenant"].apply(args=("acme",))
    assert value(c.RUNS_TOTAL, job_name="billing.schedule_tenant", kind="schedule") == 1
    jt_celery._instrumented[id(app)].uninstrument()
