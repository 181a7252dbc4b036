"""track_run and current_run: states, durations, resources, exceptions, contexts."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from otel_jobtrack import Job, current_run, track_run
from tests.helpers import value


class OverLimit(Exception):
    pass


def test_success_counts_one_invocation_duration_and_resources() -> None:
    with track_run("billing.schedule_invoices", kind="schedule", tenant="acme") as run:
        run.add_resources(3)
        run.add_resources()
        time.sleep(0.02)
    assert run.state == "success"
    assert run.duration is not None and run.duration >= 0.02
    labels = {"kind": "schedule", "job_name": "billing.schedule_invoices", "tenant": "acme"}
    assert value("jobtrack_runs_total", state="success", **labels) == 1
    assert value("jobtrack_resources_total", **labels) == 4
    assert value("jobtrack_run_duration_seconds_count", state="success", **labels) == 1
    observed = value("jobtrack_run_duration_seconds_sum", state="success", **labels)
    assert observed is not None and observed >= 0.02
    assert value("jobtrack_run_duration_seconds_bucket", state="success", le="0.01", **labels) == 0
    assert value("jobtrack_run_duration_seconds_bucket", state="success", le="+Inf", **labels) == 1
    assert value("jobtrack_runs_in_progress", **labels) == 0
    last = value("jobtrack_last_run_timestamp_seconds", state="success", **labels)
    assert last is not None and abs(last - time.time()) < 5


def test_zero_resources_still_exports_the_counter() -> None:
    with track_run("inventory.schedule", kind="schedule", tenant="initech"):
        pass
    assert value("jobtrack_resources_total", job_name="inventory.schedule", tenant="initech") == 0


def test_no_tenant_is_system() -> None:
    with track_run("maintenance.cleanup", kind="cron") as run:
        pass
    assert run.tenant == "system"
    assert value("jobtrack_runs_total", job_name="maintenance.cleanup", tenant="system") == 1


def test_exception_is_failure_and_propagates_unchanged() -> None:
    error = RuntimeError("boom")

    def inner() -> None:
        raise error

    with (
        pytest.raises(RuntimeError) as caught,
        track_run("crm.schedule", kind="schedule", tenant="umbrella"),
    ):
        inner()
    assert caught.value is error
    frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "inner"
    assert value("jobtrack_runs_total", job_name="crm.schedule", state="failure") == 1
    # Every state's counter exists from the first run on, so the failure is a visible increase.
    assert value("jobtrack_runs_total", job_name="crm.schedule", state="success") == 0


def test_mark_limited() -> None:
    with track_run("sync", kind="resource", tenant="a") as run:
        run.mark_limited()
    assert run.state == "limited"
    assert value("jobtrack_runs_total", job_name="sync", state="limited") == 1


def test_limited_exception_propagates_by_default() -> None:
    with (
        pytest.raises(OverLimit),
        track_run("sync", kind="resource", limited_exceptions=(OverLimit,)),
    ):
        raise OverLimit()
    assert value("jobtrack_runs_total", job_name="sync", state="limited") == 1
    assert value("jobtrack_runs_total", job_name="sync", state="failure") == 0


def test_limited_exception_can_be_suppressed() -> None:
    job = Job(
        "sync.suppressed", kind="resource", limited_exceptions=(OverLimit,), suppress_limited=True
    )
    with job.run(tenant="a") as run:
        raise OverLimit()
    assert run.state == "limited"
    with pytest.raises(KeyError), job.run(tenant="a"):
        raise KeyError("other errors still propagate")
    assert value("jobtrack_runs_total", job_name="sync.suppressed", state="limited") == 1
    assert value("jobtrack_runs_total", job_name="sync.suppressed", state="failure") == 1


def test_system_exit_zero_is_success_and_still_raised() -> None:
    with pytest.raises(SystemExit), track_run("script", kind="cron"):
        sys.exit(0)
    assert value("jobtrack_runs_total", job_name="script", state="success") == 1


def test_in_progress_and_oldest_start_while_running() -> None:
    with track_run("long", kind="resource", tenant="t"):
        assert value("jobtrack_runs_in_progress", job_name="long") == 1
        started = value("jobtrack_oldest_run_start_timestamp_seconds", job_name="long")
        assert started is not None and abs(started - time.time()) < 5
    assert value("jobtrack_runs_in_progress", job_name="long") == 0
    assert value("jobtrack_oldest_run_start_timestamp_seconds", job_name="long") is None


def test_current_run_reaches_nested_code_and_restores() -> None:
    def deep() -> None:
        current_run().add_resources(2)

    with track_run("outer", kind="schedule", tenant="a") as outer:
        with track_run("inner", kind="resource", tenant="a") as inner:
            deep()
            assert current_run() is inner
        assert current_run() is outer
        deep()
    assert (inner.resources, outer.resources) == (2, 2)


def test_current_run_outside_a_run_is_inert() -> None:
    current_run().add_resources(5)  # must not raise
    assert value("jobtrack_instrumentation_errors_total") == 1


def test_threads_need_bind_and_then_count_exactly() -> None:
    with track_run("fanout", kind="schedule", tenant="a") as run:
        seen: list[bool] = []
        plain = threading.Thread(target=lambda: seen.append(current_run() is run))
        plain.start()
        plain.join()

        def work() -> None:
            for _ in range(1000):
                current_run().add_resources()

        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(run.bind(work)) for _ in range(8)]:
                f.result()
    assert seen == [False]  # documented: plain threads do not inherit the run
    assert run.resources == 8000
    assert value("jobtrack_resources_total", job_name="fanout") == 8000


async def test_async_with_and_tasks() -> None:
    async def child(n: int) -> None:
        await asyncio.sleep(0)
        current_run().add_resources(n)

    async with track_run("async.schedule", kind="schedule", tenant="a") as run:
        await asyncio.gather(*(asyncio.create_task(child(i)) for i in range(5)))
        await asyncio.to_thread(lambda: current_run().add_resources(10))
    assert run.resources == 20
    assert value("jobtrack_runs_total", job_name="async.schedule", state="success") == 1


async def test_concurrent_async_runs_keep_their_own_current_run() -> None:
    async def job(tenant: str) -> str:
        async with track_run("per.tenant", kind="schedule", tenant=tenant):
            await asyncio.sleep(0.01)
            return current_run().tenant

    assert await asyncio.gather(*(job(t) for t in "abc")) == ["a", "b", "c"]


async def test_async_failure_propagates() -> None:
    with pytest.raises(ValueError, match="nope"):
        async with track_run("async.fail", kind="resource"):
            raise ValueError("nope")
    assert value("jobtrack_runs_total", job_name="async.fail", state="failure") == 1


def test_eight_threads_ten_thousand_runs_exact() -> None:
    def worker(i: int) -> None:
        for n in range(10_000):
            with track_run("threads.job", kind="resource", tenant=f"t{i % 2}") as run:
                run.add_resources(2)
                if n % 100 == 0:
                    run.mark_limited()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(
        value("jobtrack_runs_total", job_name="threads.job", tenant=t, state=s) or 0
        for t in ("t0", "t1")
        for s in ("success", "limited")
    )
    assert total == 80_000
    assert value("jobtrack_runs_total", job_name="threads.job", tenant="t0", state="limited") == 400
    assert value("jobtrack_resources_total", job_name="threads.job", tenant="t1") == 80_000
    assert value("jobtrack_runs_in_progress", job_name="threads.job", tenant="t0") == 0


def test_context_is_clean_after_exit() -> None:
    ctx = contextvars.copy_context()
    with track_run("x", kind="batch"):
        pass
    assert ctx.run(current_run).job_name == "no-run"
    assert current_run().job_name == "no-run"
