"""HTTP requests bounded as a whole, and calls abandoned at a deadline without piling up.

A socket timeout bounds each read, not the request: a gateway or collector that sends one
byte per second keeps every read under any timeout, and ``push_to_gateway(timeout=2)`` took
over 18 s against one. Two tools, used where each fits:

- :func:`push_handler`: a prometheus_client push handler whose sockets re-arm their timeout
  before every operation with the time left to one deadline, so the request ends (and its
  socket is closed) when the deadline passes, in the calling thread: nothing is left running
  and nothing leaks however often it is repeated. Name resolution, which no socket timeout
  covers, runs in a helper thread joined with the time left; at most
  :data:`MAX_PENDING_LOOKUPS` lookups may outlive their deadline (the system resolver's own
  timeouts end them), beyond that a push fails at once instead of starting another.
- :class:`OneAtATime`: for calls we cannot reach into (an OpenTelemetry exporter's request):
  run it in a daemon thread joined with the deadline; while an abandoned call is still
  running, the next one fails at once instead of starting a second, so a destination that
  never finishes holds one thread, never one per attempt.
"""

from __future__ import annotations

import contextvars
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

MAX_PENDING_LOOKUPS = 4
_lookups = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    pass


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed")
    return left


class _DeadlineSocket(socket.socket):
    """A socket whose every operation may take only the time left to ``deadline``."""

    deadline: float | None = None

    def _arm(self) -> None:
        if self.deadline is not None:
            self.settimeout(_time_left(self.deadline))

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        self._arm()
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        self._arm()
        super().sendall(*args)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS (the handshake itself is one call, bounded by the time left)."""

    deadline: float | None = None

    def _arm(self) -> None:
        if self.deadline is not None:
            self.settimeout(_time_left(self.deadline))

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        self._arm()
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        self._arm()
        super().sendall(*args)


def resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` within the deadline; literal addresses need no lookup."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(
            host.strip("[]"), port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    if not _lookups.acquire(blocking=False):
        raise DeadlineExceeded(
            f"not resolving {host}: {MAX_PENDING_LOOKUPS} earlier lookups are still running"
        )
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            _lookups.release()

    thread = threading.Thread(target=lookup, name="otel-jobtrack-resolve", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no new threads (interpreter exit): resolve here
        lookup()
    else:
        thread.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise DeadlineExceeded(f"resolving {host} did not finish in time")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[no-any-return]


def connect(host: str, port: int, deadline: float) -> _DeadlineSocket:
    """A connected :class:`_DeadlineSocket`, trying each address within the deadline."""
    last: BaseException | None = None
    for family, kind, proto, _, address in resolve(host, port, deadline):
        sock = _DeadlineSocket(family, kind, proto)
        sock.deadline = deadline
        try:
            sock.settimeout(_time_left(deadline))
            sock.connect(address)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
            if isinstance(exc, DeadlineExceeded):
                break
    raise last if last is not None else OSError(f"no address for {host}")


class _Connection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        kwargs["timeout"] = _time_left(deadline)
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = connect(self.host, self.port, self.deadline)
        if getattr(self, "_tunnel_host", None):
            self._tunnel()  # type: ignore[attr-defined]


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        kwargs["timeout"] = _time_left(deadline)
        context = kwargs.get("context") or ssl.create_default_context()
        context.sslsocket_class = _DeadlineSSLSocket
        kwargs["context"] = context
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        sock = connect(self.host, self.port, self.deadline)
        tunnel_host = getattr(self, "_tunnel_host", None)
        if tunnel_host:
            self.sock = sock
            self._tunnel()  # type: ignore[attr-defined]
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        sock.settimeout(_time_left(self.deadline))  # bounds the handshake as one call
        wrapped = context.wrap_socket(sock, server_hostname=tunnel_host or self.host)
        if isinstance(wrapped, _DeadlineSSLSocket):
            wrapped.deadline = self.deadline
        self.sock = wrapped


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Connection, deadline=self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_TLSConnection, deadline=self.deadline), req)


def push_handler(deadline: float) -> Callable[..., Callable[[], None]]:
    """A ``handler`` for prometheus_client's ``push_to_gateway`` that finishes by
    ``deadline`` (a ``time.monotonic()`` value) or raises. Like prometheus_client's default
    handler it honours the ``*_proxy`` environment variables and raises on a status >= 400."""

    def handler(
        url: str,
        method: str,
        timeout: float | None,
        headers: Sequence[tuple[str, str]],
        data: bytes,
    ) -> Callable[[], None]:
        def handle() -> None:
            request = urllib.request.Request(url, data=data, method=method)
            for name, value in headers:
                request.add_header(name, value)
            opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
            with opener.open(request, timeout=_time_left(deadline)) as response:
                if response.status >= 400:
                    raise OSError(f"error talking to pushgateway: {response.status}")

        return handle

    return handler


class OneAtATime:
    """Runs a call in a daemon thread and waits at most a deadline for it; while an abandoned
    call is still running, a further call first waits for it within its own deadline
    (``wait_for_previous=True``) or fails at once, and never starts a second thread."""

    def __init__(self, name: str, wait_for_previous: bool = False) -> None:
        self.name = name
        self.wait_for_previous = wait_for_previous
        self._running: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        running = self._running
        return running is not None and running.is_alive()

    def call(self, timeout: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        deadline = time.monotonic() + timeout
        running = self._running
        if self.wait_for_previous and running is not None and running.is_alive():
            running.join(max(0.0, timeout))
        outcome: list[Any] = []
        context = contextvars.copy_context()  # e.g. OpenTelemetry's suppress-instrumentation

        def target() -> None:
            try:
                outcome.append((True, context.run(fn, *args, **kwargs)))
            except BaseException as exc:
                outcome.append((False, exc))

        thread = threading.Thread(target=target, name=self.name, daemon=True)
        with self._lock:
            if self.busy:
                raise DeadlineExceeded(f"{self.name}: the previous call is still running")
            try:
                thread.start()
            except RuntimeError:  # no new threads (interpreter exit): call it here
                target()
            else:
                self._running = thread
        if thread.ident is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not outcome:
            raise DeadlineExceeded(f"{self.name}: unfinished after {timeout:g}s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
