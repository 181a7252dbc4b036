"""Every bounded operation is bounded as a whole, and nothing on a job's path waits.

The destinations are small socket servers in the test (``tests/attacks.py``): a Pushgateway
or OTLP collector that accepts and then answers one byte at a time, forever or a short
complete answer, or says nothing at all. A per-read timeout never fires against a trickle;
only a deadline over the whole operation does. Each operation runs in a helper thread joined
with a generous limit, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from otel_jobtrack import track_run
from otel_jobtrack._core import errors
from otel_jobtrack.exporters import pipeline
from otel_jobtrack.exporters.pushgateway import push_to_gateway
from tests.attacks import trickling

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
