"""Hostile peers for the hardening tests: a host process to attack, attack clients, and
destinations that accept a connection and then trickle or say nothing.

Everything is real sockets on loopback. The host runs in its own interpreter (``python -m
tests.attack_host``), so a descriptor limit set with ``resource.setrlimit`` applies to it
alone, and what it costs is read from outside, in ``/proc/<pid>``, where reading needs no
descriptor of the host's own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from tests.backends import REPO_ROOT

HOST_START_TIMEOUT = 30.0


class Host:
    """A process serving ``/metrics`` that keeps opening files and running jobs meanwhile.

    ``stats()`` adds what ``/proc`` says (descriptors, threads, RSS, CPU seconds) to the
    host's own counters (``open_failed``: ``open()`` calls that failed; ``runs``: jobs run).
    """

    def __init__(self, nofile: int | None = None, **server_options: Any) -> None:
        settings = {"nofile": nofile, "server": server_options}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.attack_host", json.dumps(settings)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        hello = self._read_line(HOST_START_TIMEOUT)
        self.port = int(hello["port"])
        self.pid = self.proc.pid

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise AssertionError(f"host did not answer within {timeout}s\n{self.stderr}")
        return json.loads(result[0])  # type: ignore[no-any-return]

    def command(self, line: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read_line(timeout)

    def stats(self) -> dict[str, Any]:
        out = self.command("stats")
        out.update(proc_stats(self.pid))
        return out

    def exit(self, timeout: float = 30.0) -> tuple[int, float]:
        """Let the host's interpreter exit (its server still running); ``(code, seconds)``."""
        assert self.proc.stdin is not None
        started = time.monotonic()
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proc_stats(pid: int) -> dict[str, Any]:
    """Descriptors, OS threads, resident memory (KB) and CPU seconds of a process."""
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "rss_kb": int(status["VmRSS"].split()[0]),
        "cpu": (int(fields[11]) + int(fields[12])) / ticks,
    }


# -- attack clients ------------------------------------------------------------------------


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    return sock


def open_idle(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections that send nothing (those the server refuses are kept too)."""
    socks = []
    for _ in range(count):
        try:
            socks.append(connect(port, source, timeout=5.0))
        except OSError:
            continue
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def is_closed_by_peer(sock: socket.socket, wait: float = 0.0) -> bool:
    """``True`` if the server has closed (or reset) the connection."""
    sock.settimeout(wait if wait > 0 else 0.001)
    try:
        data = sock.recv(65536, socket.MSG_PEEK)
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True
    if not data:
        return True
    # An answer (a 4xx before closing) also means the server is done with it.
    return True


class Slowloris:
    """Connections that each send a request one byte per ``interval``, reopening the ones
    the server closes (``reconnect=True``) as fast as they go, from a background thread."""

    REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000

    def __init__(
        self,
        port: int,
        count: int,
        interval: float = 1.0,
        reconnect: bool = False,
        source: str = "127.0.0.1",
    ) -> None:
        self.port = port
        self.interval = interval
        self.reconnect = reconnect
        self.source = source
        self.socks: list[socket.socket] = open_idle(port, count, source)
        self.opened = len(self.socks)
        self.closed_by_server = 0
        self._sent: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            alive = []
            for sock in self.socks:
                offset = self._sent.get(id(sock), 0)
                try:
                    sock.settimeout(0.5)
                    sock.send(
                        self.REQUEST[offset % len(self.REQUEST) : offset % len(self.REQUEST) + 1]
                    )
                    self._sent[id(sock)] = offset + 1
                    alive.append(sock)
                except OSError:
                    self.closed_by_server += 1
                    with contextlib.suppress(OSError):
                        sock.close()
            if self.reconnect:
                missing = len(self.socks) - len(alive)
                for _ in range(missing):
                    with contextlib.suppress(OSError):
                        alive.append(connect(self.port, self.source, timeout=2.0))
                        self.opened += 1
            self.socks = alive

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        close_all(self.socks)


class ConnectionFlood:
    """Opens connections as fast as it can from a background thread, holds at most ``hold``
    of them (the oldest are dropped), never sends a byte."""

    def __init__(self, port: int, hold: int = 400, source: str = "127.0.0.1") -> None:
        self.port = port
        self.hold = hold
        self.source = source
        self.opened = 0
        self.socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = connect(self.port, self.source, timeout=2.0)
            except OSError:
                time.sleep(0.01)
                continue
            self.opened += 1
            self.socks.append(sock)
            if len(self.socks) > self.hold:
                with contextlib.suppress(OSError):
                    self.socks.pop(0).close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        close_all(self.socks)


def scrape(
    port: int,
    source: str = "127.0.0.1",
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """A well-behaved scraper from ``source`` (any 127.x.y.z is loopback on Linux)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw_request(
    port: int, data: bytes, timeout: float = 10.0, source: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """Send ``data`` as is and read the answer until the server closes: ``(status, body)``.

    ``status`` is 0 when the server closed without an answer.
    """
    with connect(port, source, timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/1."):
        return 0, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- destinations that accept and then stall --------------------------------------------


class TricklingServer:
    """Accepts connections, reads what the client sends, and answers one byte per
    ``interval`` seconds: by default forever (a status line, then an endless list of
    headers), or ``response`` and then nothing more.

    A client with a per-read timeout longer than ``interval`` never times out here.
    ``answer=False`` never answers at all (a wedged gateway or collector).
    """

    ENDLESS = b"HTTP/1.1 200 OK\r\n" + b"X-Trickle: yes\r\n" * 1_000_000

    def __init__(
        self, interval: float = 0.2, answer: bool = True, response: bytes | None = None
    ) -> None:
        self.interval = interval
        self.answer = answer
        self.response = self.ENDLESS if response is None else response
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        answer = self.response
        conn.settimeout(0.05)
        sent = 0
        try:
            while not self._stop.is_set():
                try:
                    if not conn.recv(65536):
                        break  # the client is gone
                except TimeoutError:
                    pass
                if self.answer and sent < len(answer):
                    conn.send(answer[sent : sent + 1])
                    sent += 1
                self._stop.wait(self.interval)
        except OSError:
            pass
        finally:
            with self._lock:
                self.open -= 1
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            conns = list(self._conns)
        close_all(conns)

    def __enter__(self) -> TricklingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def trickling(
    interval: float = 0.2, answer: bool = True, response: bytes | None = None
) -> Iterator[TricklingServer]:
    server = TricklingServer(interval, answer, response)
    try:
        yield server
    finally:
        server.close()
