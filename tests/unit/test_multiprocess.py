"""PROMETHEUS_MULTIPROC_DIR: real worker processes, one scrape that aggregates them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.helpers import value

WORKER = textwrap.dedent(
    """
    import sys, time
    from otel_jobtrack import track_run
    index, runs, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    for n in range(runs):
        with track_run("mp.schedule", kind="schedule", tenant=f"t{index % 2}") as run:
            run.add_resources(3)
            if n % 10 == 0:
                run.mark_limited()
    try:
        with track_run("mp.fail", kind="resource", every=60, grace=5):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    if hold:
        with track_run("mp.long", kind="resource", tenant="slow"):
            print("holding", flush=True)
            time.sleep(hold)
    """
)

SCRAPE = textwrap.dedent(
    """
    from prometheus_client import generate_latest
    from otel_jobtrack.exporters.prometheus.multiprocess import multiprocess_registry
    print(generate_latest(multiprocess_registry()).decode())
    """
)


def _env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return env


def _scrape(directory: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRAPE],
        env=_env(directory),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_counts_sum_across_processes(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(i), "200", "0"], env=_env(tmp_path))
        for i in range(4)
    ]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    text = _scrape(tmp_path)
    t0 = {"job_name": "mp.schedule", "tenant": "t0"}
    assert value("jobtrack_runs_total", text, state="success", **t0) == 2 * 180
    assert value("jobtrack_runs_total", text, state="limited", **t0) == 2 * 20
    assert value("jobtrack_resources_total", text, **t0) == 2 * 200 * 3
    assert value("jobtrack_run_duration_seconds_count", text, state="success", **t0) == 360
    assert (
        value("jobtrack_run_duration_seconds_bucket", text, state="success", le="+Inf", **t0) == 360
    )
    assert value("jobtrack_runs_total", text, job_name="mp.fail", state="failure") == 4
    assert value("jobtrack_job_expected_interval_seconds", text, job_name="mp.fail") == 60
    assert value("jobtrack_runs_in_progress", text, **t0) == 0
    assert value("jobtrack_oldest_run_start_timestamp_seconds", text, **t0) is None
    last = value("jobtrack_last_run_timestamp_seconds", text, state="success", **t0)
    assert last is not None and abs(last - time.time()) < 60
    assert "pid=" not in text


def test_in_progress_sums_live_processes_and_takes_oldest_start(tmp_path: Path) -> None:
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), "1", "30"],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "holding"
        text = _scrape(tmp_path)
        assert value("jobtrack_runs_in_progress", text, job_name="mp.long") == 2
        oldest = value("jobtrack_oldest_run_start_timestamp_seconds", text, job_name="mp.long")
        assert oldest is not None and time.time() - 60 < oldest <= time.time()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    # A killed worker is marked dead by the server (gunicorn's child_exit hook does this).
    from prometheus_client.multiprocess import mark_process_dead

    for holder in holders:
        mark_process_dead(holder.pid, str(tmp_path))
    text = _scrape(tmp_path)
    assert value("jobtrack_runs_in_progress", text, job_name="mp.long") is None
    assert value("jobtrack_oldest_run_start_timestamp_seconds", text, job_name="mp.long") is None
    # Counters and last-run timestamps of dead workers stay.
    assert value("jobtrack_runs_total", text, job_name="mp.fail", state="failure") == 2
