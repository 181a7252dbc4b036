"""The ``/metrics`` server's transport: one selector thread owns every socket, a fixed pool of
workers renders.

A thread per connection (socketserver's ``ThreadingMixIn``, prometheus_client's server) lets
every client hold a thread and a descriptor for as long as it likes: a few hundred idle or
trickling clients use up the host's descriptors, and oversized headers its memory. Here:

- **One I/O thread, never blocked by a client.** The TLS handshake, reading the request head,
  writing the response and the lingering close are non-blocking steps driven by readiness
  (``selectors``), so a slow client costs a registered descriptor and a small buffer, not a
  thread. A handshake is a few milliseconds of CPU; doing it here, non-blocking and under the
  connection's deadline, keeps it out of the accept path without a thread per handshake.
- **A fixed pool of workers** (``workers``) runs the WSGI app, and only for requests that
  passed the gate (``screen``: authentication, the literal path, the method), which runs in the
  I/O thread before anything is rendered. A request body is never read.
- **A cap on connections** (``max_connections``, and at most a quarter of the descriptor limit,
  read at every accept, so the host keeps its own descriptors). At the cap the oldest
  connection of the peer that holds the most is closed to make room (IPv6 peers are grouped by
  /64): a flood from one address evicts its own connections, and a scraper's connection,
  which lives for milliseconds, is not the oldest. A connection whose response is being
  rendered is never evicted; if nothing can be evicted, the new connection is closed at once.
- **Whole deadlines**: ``request_timeout`` from accept to the end of the request head (the TLS
  handshake included), however the bytes trickle in; ``response_timeout`` from the rendered
  response to its last byte. Per-read timeouts are restarted by every byte; these are not.
- **Head limits while reading**: at most ``max_header_bytes`` are buffered and at most
  ``max_header_count`` header lines accepted; past either the answer is 431 and the
  connection is closed, so an unauthenticated client cannot grow the host's memory.
- **Descriptor exhaustion** (``EMFILE`` and friends at accept) pauses accepting for a moment
  instead of spinning on a listener that stays readable; it is logged once and counted.
- **Clean stop**: ``shutdown()`` stops the loop, ``server_close()`` closes every socket and
  joins the workers (bounded); servers still running at interpreter exit are stopped by an
  ``atexit`` hook, so no thread of theirs is left to be torn down during finalization.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import io
import ipaddress
import logging
import os
import queue
import re
import selectors
import socket
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from wsgiref.types import WSGIApplication

from otel_jobtrack._core import errors

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

logger = logging.getLogger("otel_jobtrack")

SERVER = "otel-jobtrack"
LINGER_SECONDS = 2.0
"""After the response, unread client data is drained (not kept) for at most this long, so a
client still sending gets the answer instead of a reset."""
LINGER_BYTES = 1 << 20
ACCEPT_PAUSE = 0.25
"""Seconds without accepting after the process ran out of descriptors."""
DESCRIPTOR_SHARE = 4
"""The server holds at most 1/DESCRIPTOR_SHARE of the process's descriptor limit."""
_WRITE_CHUNK = 16384
_ABORT = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close with a reset, discarding what the kernel still holds to send."""
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(r"\r?\n")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(r"^[\x21-\x7e]+$")
_VALUE_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NO_ACCEPT = frozenset(
    code
    for code in (
        getattr(errno, "EMFILE", None),
        getattr(errno, "ENFILE", None),
        getattr(errno, "ENOBUFS", None),
        getattr(errno, "ENOMEM", None),
    )
    if code is not None
)

# Connection states.
_HANDSHAKE, _READING, _QUEUED, _RENDERING, _WRITING, _LINGER = range(6)


@dataclass(frozen=True)
class Limits:
    """What one server may spend on its clients."""

    max_connections: int = 32
    request_timeout: float = 10.0
    response_timeout: float = 30.0
    max_header_bytes: int = 8192
    max_header_count: int = 64
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_header_bytes", "max_header_count", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("request_timeout", "response_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be positive seconds, got {value!r}")
            if value != value or value == float("inf"):
                raise ValueError(f"{name} must be finite seconds, got {value!r}")


@dataclass(frozen=True)
class Request:
    """A parsed request head; header names are lower case, repeated headers joined."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Screen = Callable[[Request], Response | None]
"""Runs in the I/O thread for every complete request head: a response ends the request there
(401, 404, ...), ``None`` sends it to a worker and the WSGI app. Must be quick."""


class BadRequest(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_head(head: bytes, max_header_count: int) -> Request:
    """Strict HTTP/1.x request-head parsing; :class:`BadRequest` says why not."""
    lines = _LINE.split(head.decode("latin-1"))
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest("400 Bad Request", "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest("400 Bad Request", "malformed method")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest("505 HTTP Version Not Supported", "unsupported HTTP version")
    if not _TARGET.match(target) or not target.startswith("/") or "#" in target:
        # Only the origin form (``/path?query``): no absolute URLs, no ``*``, no fragments.
        raise BadRequest("400 Bad Request", "malformed request target")
    if len(lines) - 1 > max_header_count:
        raise BadRequest("431 Request Header Fields Too Large", "too many header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise BadRequest("400 Bad Request", "obsolete line folding")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise BadRequest("400 Bad Request", "malformed header line")
        value = value.strip(" \t")
        if _VALUE_CTL.search(value):
            raise BadRequest("400 Bad Request", "control character in a header value")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    return Request(method, target, path, query, version, headers)


def peer_group(address: Any) -> str:
    """The unit of fairness at the cap: an IPv4 address, or an IPv6 /64."""
    host = str(address[0]) if isinstance(address, tuple) and address else str(address)
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def descriptor_cap(max_connections: int) -> int:
    """``max_connections``, lowered to a share of the current descriptor limit."""
    if resource is None:  # pragma: no cover
        return max_connections
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover
        return max_connections
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return max_connections
    return max(1, min(max_connections, soft // DESCRIPTOR_SHARE))


class _Conn:
    __slots__ = (
        "accepted",
        "buf",
        "closed",
        "deadline",
        "drained",
        "events",
        "group",
        "out",
        "peer",
        "request",
        "sent",
        "sock",
        "state",
        "tls",
    )

    def __init__(self, sock: socket.socket, peer: Any, tls: bool, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.group = peer_group(peer)
        self.tls = tls
        self.state = _HANDSHAKE if tls else _READING
        self.accepted = now
        self.deadline: float | None = None
        self.buf = bytearray()
        self.out = memoryview(b"")
        self.sent = 0
        self.drained = 0
        self.request: Request | None = None
        self.closed = False
        self.events = 0


_LIVE: weakref.WeakSet[HTTPServer] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    with _LIVE_LOCK:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_close_all_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_all_at_exit() -> None:
    """Stop every server before the interpreter finalizes (their threads then exit cleanly)."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.server_close()


def _after_fork_in_child() -> None:
    """The child has the sockets but none of the threads: drop the sockets, wait for nothing."""
    for server in list(_LIVE):
        server._forked()


class HTTPServer:
    """Serves one WSGI app on ``address`` within :class:`Limits`; see the module doc."""

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        app: WSGIApplication,
        *,
        screen: Screen | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        backlog: int = 128,
    ) -> None:
        self.limits = limits or Limits()
        self.app = app
        self.screen = screen
        self.ssl_context = ssl_context
        self.address_family = family
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(backlog)
            self.socket.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            self.socket.close()
            raise
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        # socketserver's names, for code written against the previous server.
        self.server_name: str = str(self.server_address[0])
        self.server_port: int = int(self.server_address[1])
        # Everything that needs a descriptor or a thread is taken here, in the caller, so a
        # shortage fails start_server() instead of the loop thread later.
        try:
            self._selector: selectors.BaseSelector = selectors.DefaultSelector()
            self._selector.register(self.socket, selectors.EVENT_READ, None)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        except BaseException:
            for sock in (self.socket, self._wake_r, self._wake_w):
                sock.close()
            raise
        self._conns: dict[int, _Conn] = {}
        self._work: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[_Conn, Response | bytes]] = collections.deque()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._accept_paused_until = 0.0
        self._warned_cap = False
        self._counts: collections.Counter[str] = collections.Counter()
        self._loop_thread: threading.Thread | None = None
        try:
            self._start_workers()
        except BaseException:
            self.server_close()
            raise
        _install_hooks()
        with _LIVE_LOCK:
            _LIVE.add(self)

    # -- public ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since start (accepted, evicted, refused, timed_out, too_large, ...) and
        ``open``: connections open now; ``cap``: the connection cap in force now."""
        with self._lock:
            out = dict(self._counts)
        out["open"] = len(self._conns)
        out["cap"] = descriptor_cap(self.limits.max_connections)
        return out

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run the I/O loop in this thread until :meth:`shutdown` (``poll_interval`` is
        accepted for socketserver compatibility; the loop wakes on events and deadlines)."""
        if self._closed or self._stop.is_set():
            return
        self._idle.clear()
        self._loop_thread = threading.current_thread()
        try:
            while not self._stop.is_set():
                try:
                    self._tick()
                except Exception as exc:  # the loop must outlive any bug or shortage
                    errors.instrumentation_error("metrics server loop", exc)
                    self._stop.wait(0.05)
        finally:
            self._idle.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait (briefly) until it has returned."""
        self._stop.set()
        self._wake()
        if threading.current_thread() is not self._loop_thread and not self._idle.wait(10.0):
            logger.warning("otel-jobtrack: the /metrics server loop did not stop within 10s")

    def server_close(self) -> None:
        """Close the listener and every connection, and end the workers."""
        self.shutdown()
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._work.put(None)
        deadline = time.monotonic() + 1.0
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        for conn in list(self._conns.values()):
            self._drop(conn)
        with contextlib.suppress(Exception):
            self._selector.close()
        for sock in (self.socket, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def fileno(self) -> int:
        return self.socket.fileno()

    # -- the loop ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        timeout = 1.0
        if self._accept_paused_until:
            timeout = min(timeout, max(0.0, self._accept_paused_until - now))
        for conn in self._conns.values():
            if conn.deadline is not None:
                timeout = min(timeout, max(0.0, conn.deadline - now))
        accept = False
        for key, _mask in self._selector.select(timeout):
            if key.data is None:
                accept = True  # after the connections: requests already here go first
            elif key.data is self._wake_r:
                self._drain_wake()
            else:
                conn = key.data
                if not conn.closed:
                    try:
                        self._step(conn)
                    except Exception as exc:  # a bug must cost one connection, not the server
                        errors.instrumentation_error("metrics server connection", exc)
                        self._close(conn, "")
        if accept:
            self._accept()
        self._finish_rendered()
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.register(self.socket, selectors.EVENT_READ, None)
        for conn in list(self._conns.values()):
            if conn.deadline is not None and now >= conn.deadline:
                if conn.state == _LINGER:
                    self._close(conn, "")
                else:
                    self._close(conn, "timed_out", abort=True)

    def _accept(self) -> None:
        cap = descriptor_cap(self.limits.max_connections)
        # A quarter of the cap per round: a connection accepted now has its request read
        # before a flood from its own address can make it the oldest and evict it.
        for _ in range(max(1, cap // 4)):
            try:
                sock, peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _NO_ACCEPT:
                    # Out of descriptors (or memory): the listener stays readable, so
                    # accepting again at once would spin. Pause; the backlog waits.
                    self._pause_accepting(exc)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            self._count("accepted")
            if len(self._conns) >= cap and not self._make_room():
                self._count("refused")
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            self._admit(sock, peer)

    def _pause_accepting(self, exc: OSError) -> None:
        self._count("accept_paused")
        errors.instrumentation_error("metrics server accept", exc)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(self.socket)

    def _make_room(self) -> bool:
        """Close a connection of the peer group holding the most: its oldest incomplete
        request, else its oldest connection; ``False`` if none can be closed (all are being
        rendered)."""
        candidates = [c for c in self._conns.values() if c.state != _RENDERING]
        if not candidates:
            return False
        per_group = collections.Counter(c.group for c in candidates)
        most = max(per_group.values())
        victim = min((c for c in candidates if per_group[c.group] == most), key=_eviction_order)
        if victim.state == _QUEUED:
            with self._lock:
                if victim.state != _QUEUED:  # a worker took it meanwhile
                    return self._make_room()
                victim.closed = True
        if not self._warned_cap:
            self._warned_cap = True
            logger.warning(
                "otel-jobtrack: the /metrics server reached its connection cap (%d); closing "
                "the oldest connections of the busiest peers to make room",
                len(self._conns),
            )
        self._close(victim, "evicted", abort=victim.state != _LINGER)
        return True

    def _admit(self, sock: socket.socket, peer: Any) -> None:
        now = time.monotonic()
        try:
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                sock.close()
            return
        conn = _Conn(sock, peer, self.ssl_context is not None, now)
        conn.deadline = now + self.limits.request_timeout
        self._conns[id(conn)] = conn
        self._watch(conn, selectors.EVENT_READ)

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        try:
            if conn.events and events:
                self._selector.modify(conn.sock, events, conn)
            elif events:
                self._selector.register(conn.sock, events, conn)
            else:
                self._selector.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            self._close(conn, "")
            return
        conn.events = events

    def _step(self, conn: _Conn) -> None:
        if conn.state == _HANDSHAKE:
            self._handshake(conn)
        elif conn.state == _READING:
            self._read(conn)
        elif conn.state == _WRITING:
            self._write(conn)
        elif conn.state == _LINGER:
            self._drain(conn)

    def _handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (OSError, ValueError) as exc:
            # Plain HTTP to a TLS port, no or an untrusted client certificate, a reset.
            logger.debug("otel-jobtrack: TLS handshake with %s failed: %s", conn.peer, exc)
            self._close(conn, "tls_failed")
            return
        conn.state = _READING
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        limits = self.limits
        while True:
            # Never more than the limit (plus room to see the blank line) is buffered.
            want = limits.max_header_bytes + 4 - len(conn.buf)
            try:
                data = conn.sock.recv(want)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except OSError:
                self._close(conn, "")
                return
            if not data:
                self._close(conn, "")  # the client gave up
                return
            conn.buf += data
            end = _HEAD_END.search(conn.buf)
            if end is not None and end.start() <= limits.max_header_bytes:
                self._dispatch(conn, bytes(conn.buf[: end.start()]))
                return
            if len(conn.buf) > limits.max_header_bytes:
                self._reject(conn, "431 Request Header Fields Too Large", "too_large")
                return
            if conn.buf.count(b"\n") > limits.max_header_count + 1:
                self._reject(conn, "431 Request Header Fields Too Large", "too_large")
                return
            if not conn.tls or not conn.sock.pending():  # type: ignore[attr-defined]
                return

    def _reject(self, conn: _Conn, status: str, counter: str) -> None:
        self._count(counter)
        self._respond(conn, _plain(status))

    def _dispatch(self, conn: _Conn, head: bytes) -> None:
        conn.buf = bytearray()
        try:
            request = parse_head(head, self.limits.max_header_count)
        except BadRequest as exc:
            counter = "too_large" if exc.status.startswith("431") else "bad_request"
            self._reject(conn, exc.status, counter)
            return
        try:
            verdict = self.screen(request) if self.screen is not None else None
        except Exception as exc:
            errors.instrumentation_error("metrics server screen", exc)
            verdict = _plain("500 Internal Server Error")
        if verdict is not None:
            self._count("screened")
            self._respond(conn, verdict)
            return
        conn.request = request
        conn.state = _QUEUED
        conn.deadline = None  # rendering is bounded by the pool, not by the client
        self._watch(conn, 0)
        self._work.put(conn)

    def _respond(self, conn: _Conn, response: Response | bytes) -> None:
        data = response if isinstance(response, bytes) else _serialize(response)
        conn.out = memoryview(data)
        conn.sent = 0
        conn.state = _WRITING
        conn.deadline = time.monotonic() + self.limits.response_timeout
        self._watch(conn, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        out = conn.out
        while conn.sent < len(out):
            # TLS needs a retry with the very same bytes after a want-write: fixed chunks.
            chunk = out[conn.sent : conn.sent + _WRITE_CHUNK]
            try:
                conn.sent += conn.sock.send(chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn, "")
                return
        conn.out = memoryview(b"")
        self._count("responded")
        self._linger(conn)

    def _linger(self, conn: _Conn) -> None:
        """Half-close and drain what the client still sends, so it reads the answer instead
        of a reset; bounded in time and bytes."""
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                sock.unwrap()  # sends close_notify; the peer's is not waited for
        try:
            socket.socket.shutdown(sock, socket.SHUT_WR)
        except OSError:
            self._close(conn, "")
            return
        conn.state = _LINGER
        conn.deadline = time.monotonic() + min(LINGER_SECONDS, self.limits.response_timeout)
        self._watch(conn, selectors.EVENT_READ)

    def _drain(self, conn: _Conn) -> None:
        try:
            data = socket.socket.recv(conn.sock, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn, "")
            return
        conn.drained += len(data)
        if not data or conn.drained > LINGER_BYTES:
            self._close(conn, "")

    def _close(self, conn: _Conn, counter: str, abort: bool = False) -> None:
        """``abort``: reset instead of a graceful close, so a client that stalled is told at
        once and the kernel frees what it still held to send it (a response already sent in
        full, lingering, is closed gracefully)."""
        if counter:
            self._count(counter)
        conn.closed = True
        if abort:
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self._conns.pop(id(conn), None)
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(conn.sock)
            conn.events = 0
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    # -- workers -----------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._workers) < self.limits.workers:
            worker = threading.Thread(
                target=self._worker,
                name=f"otel-jobtrack-metrics-worker-{len(self._workers)}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)

    def _worker(self) -> None:
        while True:
            conn = self._work.get()
            if conn is None or self._closed:
                return
            with self._lock:
                if conn.closed:
                    continue  # evicted while it waited
                conn.state = _RENDERING
            try:
                result: Response | bytes = self._render(conn)
            except Exception as exc:
                errors.instrumentation_error("metrics server render", exc)
                result = _plain("500 Internal Server Error")
            self._done.append((conn, result))
            self._wake()

    def _render(self, conn: _Conn) -> bytes:
        request = conn.request
        assert request is not None
        status_headers: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            status_headers[:] = [status, headers]
            return chunks.append

        result = self.app(self._environ(conn, request), start_response)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = status_headers
        hop = {"connection", "content-length", "transfer-encoding", "server", "date", "keep-alive"}
        kept = tuple((k, v) for k, v in headers if k.lower() not in hop)
        return _serialize(Response(status, b"".join(chunks), kept))

    def _environ(self, conn: _Conn, request: Request) -> dict[str, Any]:
        host, port = self.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "REQUEST_URI": request.target,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(conn.peer[0]) if isinstance(conn.peer, tuple) else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if conn.tls else "http",
            "wsgi.input": io.BytesIO(b""),  # the body is never read
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            if "_" in name:
                continue  # would be indistinguishable from its dashed twin
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ["HTTP_" + key] = value
        return environ

    def _finish_rendered(self) -> None:
        while self._done:
            conn, result = self._done.popleft()
            if conn.closed or id(conn) not in self._conns:
                continue
            self._respond(conn, result)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _forked(self) -> None:
        self._closed = True
        self._stop.set()
        self._idle.set()
        self._loop_thread = None
        self._workers = []
        for conn in list(self._conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.close()
        self._conns.clear()
        for sock in (self.socket, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            self._selector.close()


def _eviction_order(conn: _Conn) -> tuple[bool, float]:
    """Requests still arriving (or handshakes) first, then the oldest."""
    return conn.state not in (_HANDSHAKE, _READING), conn.accepted


def _plain(status: str) -> Response:
    return Response(status, (status.split(" ", 1)[1] + "\n").encode())


def _serialize(response: Response) -> bytes:
    headers: Iterable[tuple[str, str]] = response.headers
    names = {k.lower() for k, _ in headers}
    lines = [f"HTTP/1.1 {response.status}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if "content-type" not in names:
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [
        f"Content-Length: {len(response.body)}",
        f"Server: {SERVER}",
        f"Date: {formatdate(usegmt=True)}",
        "Connection: close",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1") + response.body
