"""gunicorn for real: the config module's hooks, recycled workers and a worker SIGKILLed mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_jobtrack._core import contract as c
from tests.backends import REPO_ROOT, free_port, http_request
from tests.helpers import value

APP = textwrap.dedent(
    """
    import os, time
    from urllib.parse import parse_qs
    from otel_jobtrack import track_run

    def note(*words):
        with open(os.environ["TRUTH"], "a") as f:
            f.write(" ".join(str(w) for w in (*words, os.getpid())) + "\\n")

    def app(environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        tenant = query.get("tenant", [None])[0]
        if environ["PATH_INFO"] == "/hang":
            with track_run("web.hang", kind="resource", tenant=tenant):
                note("hang")
                time.sleep(600)
        with track_run("web.work", kind="resource", tenant=tenant) as run:
            run.add_resources(2)
            note("work", tenant)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    """
)

CONF = textwrap.dedent(
    """
    from otel_jobtrack.integrations.gunicorn import *  # noqa: F403

    workers = 2
    max_requests = 5
    graceful_timeout = 5
    """
)


class Gunicorn:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.truth = directory / "truth"
        self.truth.touch()
        (directory / "webapp.py").write_text(APP)
        (directory / "gunicorn.conf.py").write_text(CONF)
        self.port = free_port()
        self.metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROM"))}
        env.update(
            PYTHONPATH=f"{directory}{os.pathsep}{REPO_ROOT}",
            TRUTH=str(self.truth),
            OTEL_EXPORTER_PROMETHEUS_PORT=str(self.metrics_port),
        )
        self.log = directory / "gunicorn.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "gunicorn.conf.py",
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "webapp:app",
                ],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: self.scrape() is not None, "arbiter /metrics", self.logs)

    def get(self, path: str, timeout: float = 10) -> int:
        status, _ = http_request("GET", f"http://127.0.0.1:{self.port}{path}", timeout=timeout)
        return status

    def scrape(self) -> str | None:
        try:
            status, body = http_request("GET", f"http://127.0.0.1:{self.metrics_port}/metrics")
        except OSError:
            return None
        return body.decode() if status == 200 else None

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.scrape()
        assert text is not None
        return value(name, text, **labels)

    def lines(self, word: str) -> list[list[str]]:
        return [ln.split() for ln in self.truth.read_text().splitlines() if ln.startswith(word)]

    def logs(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_until(check: Callable[[], object], what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    started = Gunicorn(tmp_path_factory.mktemp("gunicorn"))
    yield started
    started.stop()


def test_recycled_workers_runs_all_counted_at_the_arbiter(server: Gunicorn) -> None:
    for i in range(30):
        assert server.get(f"/work?tenant=t{i % 3}") == 200
    work = server.lines("work")
    assert len(work) == 30
    assert len({line[-1] for line in work}) >= 30 // 5  # max_requests recycled them
    wait_until(
        lambda: server.metric(c.RUNS_TOTAL, job_name="web.work") == 30,
        "30 runs on /metrics",
        server.logs,
    )
    executed = Counter(line[1] for line in work)
    text = server.scrape()
    for tenant, count in executed.items():
        assert value(c.RUNS_TOTAL, text, job_name="web.work", tenant=tenant) == count
        assert value(c.RESOURCES_TOTAL, text, job_name="web.work", tenant=tenant) == 2 * count
    assert value(c.KILLED_RUNS, text) is None  # recycled, not killed


def test_a_worker_killed_mid_run_is_one_killed_failure(server: Gunicorn) -> None:
    hanging = threading.Thread(target=lambda: _ignore(server.get, "/hang?tenant=acme", 60))
    hanging.start()
    wait_until(lambda: server.lines("hang"), "the hanging run", server.logs)
    wait_until(
        lambda: server.metric(c.RUNS_IN_PROGRESS, job_name="web.hang") == 1,
        "the run in progress",
        server.logs,
    )
    os.kill(int(server.lines("hang")[0][-1]), signal.SIGKILL)
    hanging.join(timeout=60)
    wait_until(
        lambda: server.metric(c.KILLED_RUNS, job_name="web.hang", tenant="acme") == 1,
        "the killed run counted",
        server.logs,
    )
    text = server.scrape()
    labels = {"job_name": "web.hang", "tenant": "acme"}
    assert value(c.RUNS_TOTAL, text, state="failure", **labels) == 1
    assert not value(c.RUNS_IN_PROGRESS, text, **labels)
    assert value(c.OLDEST_RUN_START, text, **labels) is None
    # The arbiter replaced the worker; the other runs are intact and counting goes on.
    assert server.get("/work?tenant=after") == 200
    wait_until(
        lambda: server.metric(c.RUNS_TOTAL, job_name="web.work", tenant="after") == 1,
        "a run after the kill",
        server.logs,
    )
    assert server.metric(c.KILLED_RUNS) == 1


def _ignore(call: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(OSError):  # the worker serving it was killed
        call(*args)
