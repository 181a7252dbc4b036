"""Attacks on the ``/metrics`` server, with real sockets on loopback.

Each test is one promise of docs/hardening.md ("A /metrics server that cannot be starved")
tried the way an attacker would: clients that trickle a byte at a time, floods of idle
connections beyond the cap, oversized headers, encoded paths, a host at a low descriptor
limit, an interpreter exiting while all of that goes on. Tests that need a descriptor limit
or measure a process from outside run the server in a subprocess (``tests/attack_host.py``).
Legitimate scrapers connect from 127.0.0.2 when the attacker is 127.0.0.1 (both loopback).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from otel_jobtrack import (
    make_metrics_asgi_app,
    make_metrics_wsgi_app,
    start_metrics_server,
    track_run,
)
from otel_jobtrack.exporters.prometheus.server import MetricsServer, make_app
from tests.attacks import (
    ConnectionFlood,
    Host,
    Slowloris,
    close_all,
    connect,
    is_closed_by_peer,
    open_idle,
    proc_stats,
    raw_request,
    scrape,
)
from tests.backends import REPO_ROOT, free_port
from tests.unit.test_server_security import Pki, client_context, pki  # noqa: F401

USER = "scraper"
PASSWORD = "s3cret"
LEGIT = "127.0.0.2"
"""Source address of the well-behaved scraper; attackers use 127.0.0.1."""


@contextmanager
def serving(**options: Any) -> Iterator[MetricsServer]:
    server, thread = start_metrics_server(port=0, addr="127.0.0.1", **options)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _runs() -> None:
    for tenant in ("acme", "globex"):
        with track_run("attack.sync", kind="resource", tenant=tenant) as run:
            run.add_resources(2)


def _port(server: MetricsServer) -> int:
    return int(server.server_address[1])


def _auth() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _wait_closed(sock: socket.socket, trickle: bytes, interval: float, limit: float) -> float:
    """Send ``trickle`` one byte per ``interval`` until the server closes; seconds it took."""
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < limit:
        if is_closed_by_peer(sock, wait=interval):
            return time.monotonic() - started
        try:
            sock.send(trickle[sent % len(trickle) : sent % len(trickle) + 1])
        except OSError:
            return time.monotonic() - started
        sent += 1
    return float("inf")


# -- whole deadlines -----------------------------------------------------------------------


def test_trickling_request_is_cut_at_the_whole_request_deadline() -> None:
    """A byte every 0.2 s restarts any per-read timeout; the deadline counts from accept."""
    _runs()
    with serving(request_timeout=1.0) as server:
        sock = connect(_port(server))
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        try:
            took = _wait_closed(sock, b"X-Slow: " + b"a" * 1000, interval=0.2, limit=20)
        finally:
            sock.close()
        assert took < 20, "a trickling client was never disconnected"
        assert took >= 0.8  # the deadline, not an error on the first bytes
        assert server.stats()["timed_out"] >= 1
        assert scrape(_port(server))[0] == 200
        assert server.server_port == _port(server)  # socketserver's name still works


def test_trickling_tls_client_is_cut_at_the_same_deadline(pki: Pki) -> None:  # noqa: F811
    """Handshake done quickly, then the request trickles: the handshake's time counts too."""
    with serving(certfile=pki.server_cert, keyfile=pki.server_key, request_timeout=1.5) as server:
        raw = connect(_port(server))
        tls = client_context(pki).wrap_socket(raw, server_hostname="localhost")
        try:
            tls.sendall(b"GET /metrics HTTP/1.1\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 20 and not closed:
                try:
                    tls.sendall(b"a")
                    tls.settimeout(0.2)
                    closed = tls.recv(1024) == b""
                except TimeoutError:
                    pass
                except (OSError, ssl.SSLError):
                    closed = True
            assert closed, "a trickling TLS client was never disconnected"
        finally:
            tls.close()
        assert server.stats()["timed_out"] >= 1


class _Big(Collector):
    """About 8 MB of exposition: a response too big for the socket buffers."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("big_gauge", "Padding.", labels=["id", "pad"])
        pad = "p" * 60
        for i in range(100_000):
            family.add_metric([str(i), pad], float(i))
        yield family


def test_slow_reader_is_cut_at_the_response_deadline() -> None:
    registry = CollectorRegistry()
    registry.register(_Big())
    with serving(registry=registry, response_timeout=1.0) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", _port(server)))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        started = time.monotonic()
        try:
            while time.monotonic() - started < 30:
                time.sleep(0.1)
                sock.settimeout(5)
                try:
                    chunk = sock.recv(1024)
                except OSError:
                    break
                if not chunk:
                    break
                received += len(chunk)
        finally:
            sock.close()
        assert time.monotonic() - started < 30, "a slow reader kept its response forever"
        assert received < 4_000_000  # cut off, not served in full at 10 KB/s


# -- the connection cap ----------------------------------------------------------------------


def test_at_the_cap_the_busiest_peer_makes_room() -> None:
    """Idle connections fill the cap; scrapes still get in, from another address and from the
    attacker's own, and the server never holds more than the cap."""
    _runs()
    with serving(max_connections=8) as server:
        port = _port(server)
        held = open_idle(port, 8)
        try:
            assert scrape(port, source=LEGIT)[0] == 200
            assert scrape(port)[0] == 200
            held += open_idle(port, 200)
            for _ in range(3):
                assert scrape(port, source=LEGIT)[0] == 200
            stats = server.stats()
            assert stats["open"] <= 8
            assert stats["evicted"] >= 200
            # The flood evicted its own connections: most of what it opened is closed.
            assert sum(is_closed_by_peer(s, wait=0.01) for s in held) >= len(held) - 8
        finally:
            close_all(held)


@pytest.mark.slow
def test_floods_hold_no_threads_and_a_bounded_number_of_descriptors() -> None:
    """Hundreds of idle connections and reconnecting slowloris clients at once: the host's
    threads do not grow, its descriptors stay within the cap, scrapes succeed throughout."""
    with Host() as host:
        time.sleep(0.5)
        before = host.stats()
        flood = ConnectionFlood(host.port, hold=400)
        slow = Slowloris(host.port, 60, interval=0.3, reconnect=True)
        try:
            time.sleep(1.0)
            statuses = []
            for _ in range(5):
                statuses.append(scrape(host.port, source=LEGIT)[0])
                statuses.append(scrape(host.port)[0])
                time.sleep(0.2)
            during = host.stats()
        finally:
            flood.stop()
            slow.stop()
        assert during["threads"] == before["threads"], (before, during)
        assert during["fds"] <= before["fds"] + 32 + 2, (before, during)
        assert statuses == [200] * 10
        assert during["open_failed"] == 0
        assert flood.opened > 300, "the flood did not reach far beyond the cap"


@pytest.mark.slow
@pytest.mark.parametrize("nofile", [64, 256])
def test_the_host_keeps_its_descriptors_at_a_low_limit(nofile: int) -> None:
    """With RLIMIT_NOFILE at 64 or 256, twice that many attack connections: the host's own
    ``open()`` never fails, and scrapes succeed."""
    with Host(nofile=nofile) as host:
        time.sleep(0.5)
        before = host.stats()
        held = open_idle(host.port, 2 * nofile)
        slow = Slowloris(host.port, 40, interval=0.3, reconnect=True)
        try:
            time.sleep(1.5)
            statuses = [scrape(host.port, source=LEGIT)[0] for _ in range(3)]
            statuses += [scrape(host.port)[0] for _ in range(3)]
            during = host.stats()
        finally:
            slow.stop()
            close_all(held)
        assert during["open_failed"] == 0, host.stderr
        assert statuses == [200] * 6
        assert during["fds"] <= before["fds"] + nofile // 4 + 2, (before, during)
        assert during["runs"] > before["runs"]


@pytest.mark.slow
def test_no_cpu_spin_at_the_descriptor_limit_and_recovery_after() -> None:
    """The host itself uses up its descriptors; connections wait in the backlog. Accepting
    fails with EMFILE while the listener stays readable: the server must not spin."""
    with Host(nofile=64) as host:
        assert host.command("hog")["hogged"] > 0
        waiting = open_idle(host.port, 5)
        try:
            time.sleep(0.5)
            cpu_before = proc_stats(host.pid)["cpu"]
            time.sleep(2.0)
            cpu = proc_stats(host.pid)["cpu"] - cpu_before
            host.command("release")
            status = scrape(host.port, source=LEGIT)[0]
        finally:
            close_all(waiting)
        assert cpu < 0.3, f"{cpu:.2f} CPU seconds in 2 s at the descriptor limit"
        assert status == 200


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_oversized_headers_do_not_grow_the_hosts_memory() -> None:
    """40 unauthenticated clients each sending 99 header lines of 64 KB (the most
    prometheus_client's parser accepts): about 250 MB offered."""
    with Host(username=USER, password=PASSWORD) as host:
        time.sleep(0.5)
        before = host.stats()["rss_kb"]
        line = b"X-Big: " + b"a" * 65000 + b"\r\n"
        socks = []

        def attack() -> None:
            try:
                sock = connect(host.port)
            except OSError:
                return
            socks.append(sock)
            try:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    sock.sendall(line)
            except OSError:
                pass  # refused early: what should happen

        threads = [threading.Thread(target=attack) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        time.sleep(0.5)
        after = host.stats()["rss_kb"]
        close_all(socks)
        assert (after - before) < 20 * 1024, f"RSS grew by {(after - before) // 1024} MB"


def test_header_limits_answer_431_before_buffering_more() -> None:
    _runs()
    with serving() as server:  # the defaults: 8 KiB, 64 lines
        pad = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
        assert raw_request(_port(server), pad)[0] == 431
        lines = b"GET /metrics HTTP/1.1\r\n" + b"X-A: 1\r\n" * 65 + b"\r\n"
        assert raw_request(_port(server), lines)[0] == 431

    with serving(max_header_bytes=1024, max_header_count=10) as server:
        port = _port(server)

        def head(lines: list[bytes]) -> bytes:
            return b"\r\n".join([b"GET /metrics HTTP/1.1", *lines]) + b"\r\n\r\n"

        exact = head([b"X-Pad: " + b"a" * (1024 - len(head([b"X-Pad: "])) + 4)])
        assert len(exact) - 4 == 1024
        assert raw_request(port, exact)[0] == 200
        over = head([b"X-Pad: " + b"a" * (1025 - len(head([b"X-Pad: "])) + 4)])
        assert raw_request(port, over)[0] == 431
        assert raw_request(port, head([b"X-A: 1"] * 10))[0] == 200
        assert raw_request(port, head([b"X-A: 1"] * 11))[0] == 431
        # Without a blank line ever: refused as soon as the limit is passed.
        status, _ = raw_request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000)
        assert status == 431
        assert server.stats()["too_large"] >= 3


def test_malformed_requests_are_refused() -> None:
    _runs()
    with serving() as server:
        port = _port(server)
        for request, status in (
            (b"GET /metrics HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
            (b"GET /metrics HTTP/1.1\r\nX-A : 1\r\n\r\n", 400),
            (b"GET /metrics HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400),
            (b"GET /metrics\r\n\r\n", 400),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
            (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            (b"GET /metrics HTTP/1.0\n\n", 200),
        ):
            assert raw_request(port, request)[0] == status, request


# -- the literal path --------------------------------------------------------------------------


LITERAL_PATHS = [
    ("/metrics", 200),
    ("/metrics?name[]=jobtrack_resources_total", 200),  # a query string: the same resource
    ("/metrics?x", 200),
    ("/", 200),  # the landing page, no metrics
    ("/%6detrics", 404),
    ("/%6Detrics", 404),
    ("/metric%73", 404),
    ("/%2fmetrics", 404),
    ("/%2Fmetrics", 404),
    ("//metrics", 404),
    ("/metrics/", 404),
    ("/./metrics", 404),
    ("/x/../metrics", 404),
    ("/metrics;a=b", 404),
    ("/METRICS", 404),
    ("/metrics%3Fx", 404),
    ("/metrics%00", 404),
    ("/metrics#x", 400),
    ("http://127.0.0.1/metrics", 400),  # absolute form: a request for a proxy
    ("*", 400),
]


def test_only_the_literal_path_serves_the_metrics() -> None:
    _runs()
    with serving() as server:
        port = _port(server)
        for target, expected in LITERAL_PATHS:
            request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            status, body = raw_request(port, request)
            assert status == expected, target
            assert (b"jobtrack_resources_total" in body) == (expected == 200 and target != "/")
    with serving(username=USER, password=PASSWORD) as server:
        # Credentials first: an encoded path learns nothing more than any other.
        status, _ = raw_request(_port(server), b"GET /%6detrics HTTP/1.1\r\n\r\n")
        assert status == 401


def _call_wsgi(app: Any, **environ: Any) -> tuple[str, bytes]:
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/metrics",
        "QUERY_STRING": "",
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    seen: list[str] = []
    body = b"".join(app({**base, **environ}, lambda status, headers, *exc: seen.append(status)))
    return seen[0], body


def test_embedded_apps_refuse_encoded_paths() -> None:
    """A WSGI or ASGI server decodes the path before routing, so ``/%6detrics`` can reach an
    app mounted at ``/metrics``; servers that pass the raw path let the app refuse it."""
    _runs()
    for app in (make_metrics_wsgi_app(), make_app()):
        assert _call_wsgi(app)[0].startswith("200")
        assert _call_wsgi(app, RAW_URI="/metrics?name%5B%5D=x")[0].startswith("200")
        assert _call_wsgi(app, RAW_URI="/%6detrics")[0].startswith("404")  # gunicorn
        assert _call_wsgi(app, REQUEST_URI="/%6detrics?x=1")[0].startswith("404")  # uWSGI
        mounted = {"SCRIPT_NAME": "/ops", "PATH_INFO": "/metrics"}
        assert _call_wsgi(app, RAW_URI="/ops/%6detrics", **mounted)[0].startswith("404")

    asgi = make_metrics_asgi_app()

    async def call(raw_path: bytes) -> int:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "raw_path": raw_path,
            "query_string": b"",
            "headers": [],
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asgi(scope, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(call(b"/metrics")) == 200
    assert asyncio.run(call(b"/metrics?name%5B%5D=jobtrack_runs_total")) == 200
    assert asyncio.run(call(b"/%6detrics")) == 404


@pytest.mark.slow
def test_embedded_wsgi_app_under_gunicorn_refuses_encoded_paths() -> None:
    """The same against a real gunicorn, which decodes the path before the app sees it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "otel_jobtrack:make_metrics_wsgi_app()",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        while True:
            try:
                status, body = raw_request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() - started < 60, "gunicorn did not start"
                time.sleep(0.2)
        assert status == 200 and b"# HELP jobtrack_" in body
        for path in (b"/%6detrics", b"/metric%73", b"/%2Fmetrics"):
            request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            assert raw_request(port, request)[0] == 404, path
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# -- authentication before any work ------------------------------------------------------------


class _Counting(Collector):
    def __init__(self) -> None:
        self.collects = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.collects += 1
        yield GaugeMetricFamily("counted", "Collections.", value=self.collects)


def test_authentication_comes_before_any_body_or_rendering_work() -> None:
    registry = CollectorRegistry()
    counting = _Counting()
    registry.register(counting)
    with serving(registry=registry, username=USER, password=PASSWORD) as server:
        port = _port(server)
        for _ in range(20):
            assert scrape(port)[0] == 401
        # A huge declared body: answered 401 while the client is still sending it.
        sock = connect(port)
        try:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
            sent = 0
            answer = b""
            sock.settimeout(0.05)
            started = time.monotonic()
            while not answer and time.monotonic() - started < 10:
                try:
                    sent += sock.send(b"b" * 65536)
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    break
                with suppress(TimeoutError):
                    answer = sock.recv(4096)
        finally:
            sock.close()
        assert answer.split(b"\r\n", 1)[0].endswith(b" 401 Unauthorized"), answer
        assert sent < 100_000_000
        assert counting.collects == 0
        assert scrape(port, headers=_auth())[0] == 200
        assert counting.collects == 1


def test_tls_handshakes_that_never_come_are_evicted(pki: Pki) -> None:  # noqa: F811
    _runs()
    with serving(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        username=USER,
        password=PASSWORD,
        max_connections=4,
    ) as server:
        silent = open_idle(_port(server), 20)
        try:
            context = client_context(pki)
            for _ in range(3):
                raw = connect(_port(server), source=LEGIT)
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    header = _auth()["Authorization"]
                    request = f"GET /metrics HTTP/1.1\r\nAuthorization: {header}\r\n\r\n"
                    tls.sendall(request.encode())
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
                assert data.startswith(b"HTTP/1.1 200") and b"jobtrack_runs_total" in data
            assert server.stats()["evicted"] >= 16
        finally:
            close_all(silent)


# -- a clean stop under attack -----------------------------------------------------------------


@pytest.mark.slow
def test_shutdown_under_attack_releases_every_thread_and_descriptor() -> None:
    with Host() as host:
        time.sleep(0.5)
        before = host.stats()
        flood = ConnectionFlood(host.port, hold=200)
        slow = Slowloris(host.port, 30, interval=0.2, reconnect=True)
        try:
            time.sleep(1.0)
            stopped = host.command("shutdown")
            time.sleep(0.3)
            after = host.stats()
        finally:
            flood.stop()
            slow.stop()
        assert stopped["seconds"] < 10 and not stopped["thread_alive"], stopped
        # The listener, its wake-up pair and selector, every connection and worker are gone.
        assert after["fds"] <= before["fds"] - 1, (before, after)
        assert after["threads"] <= before["threads"] - 1, (before, after)


@pytest.mark.slow
def test_interpreter_exit_under_attack_at_a_low_descriptor_limit() -> None:
    """The interpreter exits (its server running) while attack connections are open, at a
    64-descriptor limit: exit code 0, no abort, no fatal error."""
    for _ in range(3):
        with Host(nofile=64) as host:
            flood = ConnectionFlood(host.port, hold=300)
            slow = Slowloris(host.port, 40, interval=0.2, reconnect=True)
            try:
                started = time.monotonic()
                while time.monotonic() - started < 4:
                    if proc_stats(host.pid)["fds"] >= 63:
                        break  # the limit: where an exit used to abort
                    time.sleep(0.1)
                code, seconds = host.exit()
            finally:
                flood.stop()
                slow.stop()
            assert code == 0, host.stderr
            assert "Fatal Python error" not in host.stderr
            assert "libgcc_s" not in host.stderr
            assert seconds < 15
