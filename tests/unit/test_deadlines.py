"""Every bounded operation is bounded as a whole, and nothing on a job's path waits.

The destinations are small socket servers in the test (``tests/attacks.py``): a Pushgateway
or OTLP collector that accepts and then answers one byte at a time, forever or a short
complete answer, or says nothing at all. A per-read timeout never fires against a trickle;
only a deadline over the whole operation does. Each operation runs in a helper thread joined
with a generous limit, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

import otel_jobtrack
from otel_jobtrack import track_run
from otel_jobtrack._core import errors
from otel_jobtrack.exporters import pipeline
from otel_jobtrack.exporters.pushgateway import push_to_gateway
from tests.attacks import trickling
from tests.backends import REPO_ROOT

T = TypeVar("T")

SHORT_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
"""A complete, valid answer: 38 bytes, 19 s at one byte per 0.5 s."""
SLACK = 3.0
"""Seconds allowed beyond a deadline (a loaded machine); the failures this catches are
deadlines missed by 10 s or forever."""
LIMIT = 60.0


@pytest.fixture(autouse=True)
def reset_pipeline() -> Iterator[None]:
    pipeline.reset_for_tests(timeout=1.0)
    yield
    pipeline.reset_for_tests(timeout=1.0)


def timed(call: Callable[[], T], limit: float = LIMIT) -> tuple[T, float]:
    """``(result, seconds)`` of ``call``; fails if it is still running after ``limit``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    took = time.monotonic() - started
    if thread.is_alive():
        pytest.fail(f"still running after {limit:g}s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0], took


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _one_run() -> None:
    with track_run("deadline.job", kind="cron"):
        pass


# -- Pushgateway -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"interval": 0.5, "response": SHORT_ANSWER}, id="short-answer-trickled"),
        pytest.param({"interval": 0.2}, id="endless-trickle"),
        pytest.param({"interval": 0.2, "answer": False}, id="silent"),
    ],
)
def test_push_is_bounded_as_a_whole(answer: dict[str, Any]) -> None:
    _one_run()
    with trickling(**answer) as gateway:
        ok, took = timed(lambda: push_to_gateway(gateway.url, job="cron", timeout=1.0))
    assert ok is False
    assert took < 1.0 + SLACK, f"push_to_gateway(timeout=1) took {took:.1f}s"
    assert errors.export_error_counts()["pushgateway"] == 1


def test_repeated_pushes_leave_no_thread_or_socket_behind() -> None:
    _one_run()
    with trickling(0.2) as gateway:
        time.sleep(0.2)
        threads, fds = threading.active_count(), _fds()
        for _ in range(10):
            ok, took = timed(lambda: push_to_gateway(gateway.url, job="cron", timeout=0.3))
            assert ok is False and took < 0.3 + SLACK
        deadline = time.monotonic() + 10
        while gateway.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.accepted == 10
        assert gateway.open == 0, "a push left its connection open"
        assert threading.active_count() <= threads
        assert _fds() <= fds


def test_push_deadline_covers_name_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket timeout covers ``getaddrinfo``; a resolver that hangs (simulated: the real
    lookup would leave the machine) must not stretch the push, nor pile up threads."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging_resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "pushgateway.example":
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "resolver timed out")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging_resolver)
    _one_run()
    threads = threading.active_count()
    try:
        for _ in range(10):
            ok, took = timed(
                lambda: push_to_gateway("http://pushgateway.example:9091", "cron", timeout=0.3)
            )
            assert ok is False and took < 0.3 + SLACK
        # Lookups outliving their push are capped, not one per push.
        assert threading.active_count() - threads <= 4
    finally:
        release.set()


# -- OTLP --------------------------------------------------------------------------------------


OTLP_DESTINATIONS = [
    pytest.param({"protocol": "http/protobuf", "path": "/v1/metrics"}, id="http-trickling"),
    pytest.param({"protocol": "grpc", "path": "", "answer": False}, id="grpc-silent"),
]


@pytest.mark.parametrize("destination", OTLP_DESTINATIONS)
def test_repeated_flushes_are_bounded_and_hold_one_thread(destination: dict[str, Any]) -> None:
    """Each ``flush(timeout=0.3)`` returns in time, and ten of them against a collector that
    never finishes leave one abandoned export, not ten threads waiting behind it."""
    with trickling(0.2, answer=destination.get("answer", True)) as collector:
        exporters = otel_jobtrack.configure(
            "otlp",
            endpoint=collector.url + destination["path"],
            protocol=destination["protocol"],
            export_interval=3600,
            exit_timeout=1.0,
        )
        _one_run()
        threads = threading.active_count()
        for _ in range(10):
            ok, took = timed(lambda: exporters.flush(timeout=0.3))
            assert ok is False and took < 0.3 + SLACK
        grown = threading.active_count() - threads
        _, took = timed(lambda: exporters.shutdown(timeout=1.0))
    assert grown <= 2, f"{grown} more threads after ten flushes"
    assert took < 1.0 + SLACK
    assert errors.export_error_counts()["otlp"] >= 10


def test_a_trickling_collector_does_not_stop_the_periodic_export() -> None:
    """The export thread's exports are abandoned at their deadline (the exporter timeout), so
    it keeps trying (and counting failures) instead of hanging in the first one."""
    with trickling(0.2) as collector:
        exporters = otel_jobtrack.configure(
            "otlp",
            endpoint=collector.url + "/v1/metrics",
            export_interval=0.2,
            timeout=0.5,
            exit_timeout=1.0,
        )
        _one_run()
        reporting = exporters.reporting
        assert reporting is not None
        deadline = time.monotonic() + 30
        while reporting.failures < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reporting.failures >= 3, "the export thread hung in its first export"
        assert collector.accepted <= 3, "each failed export left a connection behind"


FORK_CHILD = """
import json, os, sys, time
import otel_jobtrack
from otel_jobtrack import track_run

exporters = otel_jobtrack.configure(
    "otlp", endpoint=sys.argv[1] + "/v1/metrics", export_interval=0.05, exit_timeout=1
)
with track_run("fork.job", kind="cron"):
    pass
started = time.monotonic()
while not exporters.reporting.in_flight:  # the parent's export is stuck in the trickle
    time.sleep(0.01)
    assert time.monotonic() - started < 30, "no export started"
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    started = time.monotonic()
    with track_run("fork.job", kind="cron"):
        pass
    first = time.monotonic() - started
    os.write(write, json.dumps({"first_run": first}).encode())
    os._exit(0)
os.close(write)
result = json.loads(os.read(read, 1000))
os.waitpid(pid, 0)
print(json.dumps(result), flush=True)
"""


def test_forked_childs_first_run_does_not_wait_for_the_parents_collector() -> None:
    """Forked while the parent's export hangs, the child's first run replaces the copied
    provider; shutting the copy down waits for the parent's export lock, which no thread of
    the child will ever release. That must happen off the run's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with trickling(0.2) as collector:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(FORK_CHILD), collector.url],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    first_run = json.loads(proc.stdout.strip().splitlines()[-1])["first_run"]
    # The copied provider's shutdown waits its whole 1 s timeout; the run must not.
    assert first_run < 1.0, f"the child's first run took {first_run:.2f}s"
