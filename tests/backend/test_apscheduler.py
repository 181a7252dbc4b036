"""APScheduler 3 for real: a running scheduler, its thread pool and its events are the truth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from otel_jobtrack import current_run, start_metrics_server
from otel_jobtrack._core import contract as c
from otel_jobtrack.integrations.apscheduler import instrument
from tests.backends import free_port, http_request
from tests.helpers import value

executed: Counter[str] = Counter()
lock = threading.Lock()


def note(what: str) -> None:
    with lock:
        executed[what] += 1


def sync_tenant(tenant_id: str, size: int) -> None:
    current_run().add_resources(size)
    note(f"sync {tenant_id}")


def nightly() -> None:
    note("nightly")


def slow() -> None:
    note("slow")
    time.sleep(1.3)


def broken() -> None:
    note("broken")
    raise RuntimeError("disk full")


@pytest.fixture
def metrics() -> Iterator[Any]:
    executed.clear()
    port = free_port()
    server, _ = start_metrics_server(port, "127.0.0.1")

    def scrape() -> str:
        status, body = http_request("GET", f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        return body.decode()

    yield scrape
    server.shutdown()
    server.server_close()


def test_jobs_added_before_and_after_are_tracked_with_their_cadence(metrics: Any) -> None:
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(4)})
    scheduler.add_job(sync_tenant, "interval", seconds=0.2, kwargs={"tenant_id": "acme", "size": 3})
    instrument(scheduler, tenant="tenant_id")
    scheduler.add_job(nightly, "cron", hour=3, minute=0)  # never fires here: cadence only
    scheduler.start()
    scheduler.add_job(sync_tenant, "interval", seconds=0.3, args=["globex", 1])
    scheduler.add_job(broken, "interval", seconds=0.25)
    time.sleep(1.6)
    scheduler.shutdown(wait=True)

    text = metrics()
    name = f"{__name__}.sync_tenant"
    for tenant, size in (("acme", 3), ("globex", 1)):
        runs = executed[f"sync {tenant}"]
        assert runs >= 3
        labels = {"job_name": name, "tenant": tenant, "kind": "cron"}
        assert value(c.RUNS_TOTAL, text, state="success", **labels) == runs
        assert value(c.RESOURCES_TOTAL, text, **labels) == runs * size
    assert (
        value(c.RUNS_TOTAL, text, job_name=f"{__name__}.broken", state="failure")
        == executed["broken"]
    )
    # Jobs sharing a name declare the longest interval among them.
    assert value(c.EXPECTED_INTERVAL, text, job_name=name) == 0.3
    assert value(c.EXPECTED_INTERVAL, text, job_name=f"{__name__}.nightly") == 86400
    assert value(c.RUNS_TOTAL, text, job_name=f"{__name__}.nightly") is None


def test_max_instances_skips_and_misfires_are_counted_as_limited(metrics: Any) -> None:
    skipped: Counter[str] = Counter()

    def listen(event: JobEvent) -> None:
        what = "max" if event.code == EVENT_JOB_MAX_INSTANCES else "missed"
        skipped[f"{event.job_id} {what}"] += len(getattr(event, "scheduled_run_times", [0]))

    # One worker thread: "slow" occupies it, so "late" waits past its misfire grace time.
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)})
    scheduler.add_listener(listen, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    instrument(scheduler, jobs={"late": {"name": "late-job"}})
    scheduler.add_job(slow, "interval", seconds=0.1, id="slow", max_instances=1)
    scheduler.add_job(
        nightly, "interval", seconds=0.2, id="late", misfire_grace_time=1, max_instances=50
    )
    scheduler.start()
    time.sleep(3.0)
    scheduler.shutdown(wait=True)

    assert skipped["slow max"] >= 2 and skipped["late missed"] >= 1
    text = metrics()
    slow_name = f"{__name__}.slow"
    assert value(c.RUNS_TOTAL, text, job_name=slow_name, state="success") == executed["slow"]
    assert value(c.RUNS_TOTAL, text, job_name=slow_name, state="limited") == skipped["slow max"]
    assert value(c.RUNS_TOTAL, text, job_name="late-job", state="limited") == skipped["late missed"]
    assert value(c.RUNS_TOTAL, text, job_name="late-job", state="success") == executed["nightly"]


async def fetch(tenant_id: str) -> None:
    await asyncio.sleep(0.01)
    current_run().add_resources(2)
    note(f"fetch {tenant_id}")


async def test_coroutine_jobs_stay_coroutines_and_see_their_run(metrics: Any) -> None:
    scheduler = AsyncIOScheduler()
    instrument(scheduler, tenant="tenant_id")
    scheduler.add_job(fetch, "interval", seconds=0.1, args=["acme"])
    scheduler.start()
    await asyncio.sleep(0.8)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.1)
    runs = executed["fetch acme"]
    assert runs >= 3
    text = metrics()
    labels = {"job_name": f"{__name__}.fetch", "tenant": "acme"}
    assert value(c.RUNS_TOTAL, text, state="success", **labels) == runs
    assert value(c.RESOURCES_TOTAL, text, **labels) == 2 * runs
