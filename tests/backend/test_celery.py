"""Celery for real: Redis broker, prefork worker, beat; counts compared with what executed.

Every task appends a line to a "truth" file when it runs, so the metrics are compared with
what really happened, including a pool child SIGKILLed mid-task and children recycled by
``--max-tasks-per-child`` that deliver over OTLP into VictoriaMetrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_jobtrack._core import contract as c
from tests.backends import (
    REPO_ROOT,
    RedisServer,
    VictoriaMetricsServer,
    free_port,
    http_request,
)
from tests.helpers import value

APP = textwrap.dedent(
    """
    import os, time
    from datetime import timedelta
    from celery import Celery
    from celery.schedules import crontab
    from otel_jobtrack import current_run
    from otel_jobtrack.integrations.celery import instrument

    app = Celery("tasks_app", broker=os.environ["BROKER"])
    app.conf.update(
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        beat_schedule={
            "tick": {"task": "t.tick", "schedule": timedelta(seconds=1)},
            "nightly": {"task": "t.nightly", "schedule": crontab(minute=0, hour=3)},
        },
    )
    TRUTH = os.environ["TRUTH"]

    def note(*words):
        with open(TRUTH, "a") as f:
            f.write(" ".join(str(w) for w in (*words, os.getpid())) + "\\n")

    @app.task(name="t.work")
    def work(tenant_id, n):
        current_run().add_resources(n)
        note("work", tenant_id)

    @app.task(name="t.flaky", bind=True, max_retries=3)
    def flaky(self, tenant_id):
        note("flaky", tenant_id, self.request.retries)
        if self.request.retries == 0:
            raise self.retry(countdown=0.1)

    @app.task(name="t.doomed", autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0.1)
    def doomed(tenant_id):
        note("doomed", tenant_id)
        raise ValueError("always")

    @app.task(name="t.hang", jobtrack={"kind": "batch"})
    def hang():
        note("hang")
        time.sleep(600)

    @app.task(name="t.tick")
    def tick():
        note("tick")

    @app.task(name="t.nightly")
    def nightly():
        note("nightly")

    instrument(app, tenant="tenant_id", tasks={"t.work": {"kind": "schedule"}})
    """
)


class Celery:
    """The app's directory, truth file and processes (worker, beat)."""

    def __init__(self, directory: Path, redis: RedisServer, db: int) -> None:
        self.directory = directory
        self.truth = directory / "truth"
        self.truth.touch()
        (directory / "tasks_app.py").write_text(APP)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROM"))}
        self.env.update(
            PYTHONPATH=f"{directory}{os.pathsep}{REPO_ROOT}",
            BROKER=f"{redis.url}/{db}",
            TRUTH=str(self.truth),
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{args[0]}-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks_app", *args],
            cwd=self.directory,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, port: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = self.start(
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *args,
            OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
            **env,
        )
        wait_until(lambda: scrape(port) is not None, f"worker /metrics on {port}", self.logs)
        return proc

    def send(self, name: str, *args: object, count: int = 1) -> None:
        code = (
            "import sys, json\nfrom tasks_app import app\n"
            "args = json.loads(sys.argv[2])\n"
            "for _ in range(int(sys.argv[3])):\n"
            "    app.send_task(sys.argv[1], args=args)\n"
        )
        import json

        subprocess.run(
            [sys.executable, "-c", code, name, json.dumps(list(args)), str(count)],
            cwd=self.directory,
            env=self.env,
            check=True,
            timeout=60,
        )

    def executed(self) -> Counter[tuple[str, ...]]:
        """(task, tenant...) of each line of the truth file (pid dropped)."""
        lines = self.truth.read_text().splitlines()
        return Counter(tuple(line.split()[:-1]) for line in lines)

    def pids(self, word: str) -> list[int]:
        lines = self.truth.read_text().splitlines()
        return [int(line.split()[-1]) for line in lines if line.split()[0] == word]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
            for p in sorted(self.directory.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def scrape(port: int) -> str | None:
    try:
        status, body = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
    except OSError:
        return None
    return body.decode() if status == 200 else None


def wait_until(
    check: Callable[[], object], what: str, logs: Callable[[], str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def celery_app(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Celery]:
    app = Celery(tmp_path_factory.mktemp("celery"), redis_server, db=1)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def worker_port(celery_app: Celery) -> int:
    """One prefork worker (2 children) serving /metrics from its main process."""
    port = free_port()
    celery_app.worker(port)
    return port


def metric(port: int, name: str, **labels: str) -> float | None:
    text = scrape(port)
    assert text is not None
    return value(name, text, **labels)


def test_tasks_are_jobs_named_by_celery_with_kind_tenant_and_resources(
    celery_app: Celery, worker_port: int
) -> None:
    celery_app.send("t.work", "acme", 2, count=6)
    celery_app.send("t.work", "globex", 1, count=4)
    wait_until(
        lambda: metric(worker_port, c.RUNS_TOTAL, job_name="t.work") == 10,
        "10 runs of t.work",
        celery_app.logs,
    )
    executed = celery_app.executed()
    assert (executed[("work", "acme")], executed[("work", "globex")]) == (6, 4)
    text = scrape(worker_port)
    for tenant, runs, resources in (("acme", 6, 12), ("globex", 4, 4)):
        labels = {"kind": "schedule", "job_name": "t.work", "tenant": tenant}
        assert value(c.RUNS_TOTAL, text, state="success", **labels) == runs
        assert value(c.RESOURCES_TOTAL, text, **labels) == resources
    # Declared from beat_schedule when the worker started, before any run.
    assert value(c.EXPECTED_INTERVAL, text, job_name="t.nightly", kind="cron") == 86400
    assert value(c.EXPECTED_INTERVAL, text, job_name="t.tick", kind="cron") == 1
    assert "__main__" not in text and "tasks_app." not in text


def test_retries_are_limited_and_only_final_failures_fail(
    celery_app: Celery, worker_port: int
) -> None:
    celery_app.send("t.flaky", "acme", count=3)
    celery_app.send("t.doomed", "initech", count=2)
    wait_until(
        lambda: (
            celery_app.executed()[("flaky", "acme", "1")] == 3
            and celery_app.executed()[("doomed", "initech")] == 6
            and metric(worker_port, c.RUNS_TOTAL, job_name="t.doomed") == 6
            and metric(worker_port, c.RUNS_TOTAL, job_name="t.flaky") == 6
        ),
        "retries to finish",
        celery_app.logs,
    )
    text = scrape(worker_port)
    flaky = {"job_name": "t.flaky", "tenant": "acme", "kind": "resource"}
    assert value(c.RUNS_TOTAL, text, state="success", **flaky) == 3
    assert value(c.RUNS_TOTAL, text, state="limited", **flaky) == 3
    assert value(c.RUNS_TOTAL, text, state="failure", **flaky) == 0
    doomed = {"job_name": "t.doomed", "tenant": "initech"}
    assert value(c.RUNS_TOTAL, text, state="limited", **doomed) == 4  # two retries each
    assert value(c.RUNS_TOTAL, text, state="failure", **doomed) == 2  # the final failures


def test_a_pool_child_killed_mid_task_is_a_killed_failure(
    celery_app: Celery, worker_port: int
) -> None:
    celery_app.send("t.hang")
    wait_until(lambda: celery_app.pids("hang"), "t.hang to start", celery_app.logs)
    wait_until(
        lambda: metric(worker_port, c.RUNS_IN_PROGRESS, job_name="t.hang") == 1,
        "t.hang in progress",
        celery_app.logs,
    )
    pid = celery_app.pids("hang")[0]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: metric(worker_port, c.KILLED_RUNS, job_name="t.hang") == 1,
        "the killed run to be counted",
        celery_app.logs,
    )
    text = scrape(worker_port)
    labels = {"job_name": "t.hang", "kind": "batch", "tenant": "system"}
    assert value(c.RUNS_TOTAL, text, state="failure", **labels) == 1
    assert not value(c.RUNS_IN_PROGRESS, text, **labels)  # 0 or gone with its process
    assert value(c.OLDEST_RUN_START, text, **labels) is None
    assert value(c.RUN_DURATION + "_count", text, state="failure", **labels) == 1
    # The pool replaced the child and goes on working.
    celery_app.send("t.work", "after-kill", 1)
    wait_until(
        lambda: metric(worker_port, c.RUNS_TOTAL, job_name="t.work", tenant="after-kill"),
        "a task after the kill",
        celery_app.logs,
    )
    assert metric(worker_port, c.KILLED_RUNS, job_name="t.hang") == 1  # counted once


def test_beat_triggered_runs_are_cron_runs_counted_exactly(
    celery_app: Celery, worker_port: int
) -> None:
    beat = celery_app.start(
        "beat", "-s", str(celery_app.directory / "beat-schedule"), "--pidfile=", "-l", "info"
    )
    wait_until(lambda: celery_app.executed()[("tick",)] >= 3, "three beat ticks", celery_app.logs)
    beat.terminate()
    beat.wait(timeout=30)
    time.sleep(1.5)  # a tick sent just before beat stopped
    ticks = celery_app.executed()[("tick",)]
    wait_until(
        lambda: metric(worker_port, c.RUNS_TOTAL, job_name="t.tick", kind="cron") == ticks,
        f"{ticks} tick runs",
        celery_app.logs,
    )
    assert metric(worker_port, c.RUNS_TOTAL, job_name="t.tick", state="success") == ticks


@pytest.mark.slow
def test_recycled_children_deliver_every_run_over_otlp_and_metrics(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = Celery(tmp_path_factory.mktemp("celery-recycled"), redis_server, db=2)
    with VictoriaMetricsServer(workdir=tmp_path_factory.mktemp("vm")) as vm:
        port = free_port()
        try:
            worker = app.worker(
                port,
                "--max-tasks-per-child",
                "5",
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=vm.otlp_url,
                OTEL_METRIC_EXPORT_INTERVAL="600000",  # only the exit flush delivers
                OTEL_SERVICE_NAME="celery-recycled",
            )
            app.send("t.work", "acme", 1, count=120)
            wait_until(lambda: app.executed()[("work", "acme")] == 120, "120 runs", app.logs)
            wait_until(
                lambda: metric(port, c.RUNS_TOTAL, job_name="t.work") == 120,
                "120 runs on /metrics",
                app.logs,
            )
            children = set(app.pids("work"))
            assert len(children) >= 120 // 5  # recycled every 5 tasks
            worker.send_signal(signal.SIGTERM)  # warm shutdown: the last children exit too
            worker.wait(timeout=60)
        finally:
            app.stop()
        query = 'sum(last_over_time(jobtrack_runs_total{job_name="t.work",state="success"}[10m]))'
        vm.wait_for(query, lambda r: bool(r) and float(r[0]["value"][1]) == 120, timeout=30)
        runs = 'last_over_time(jobtrack_runs_total{job_name="t.work"}[10m])'
        instances = vm.query(f"count by (service_instance_id) ({runs})")
        assert len(instances) == len(children)
