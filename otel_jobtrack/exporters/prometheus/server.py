"""The ``/metrics`` HTTP server: prometheus_client's exposition behind TLS, basic auth, one path.

prometheus_client's own ``start_http_server`` serves the metrics on every path (a proxy rule
that protects ``/metrics`` does not cover ``/anything``), has no authentication, and runs the
TLS handshake in its accept loop, where one client that connects and sends nothing stalls
every later scrape. This server keeps prometheus_client's exposition (content negotiation,
gzip, ``name[]`` filtering) and adds:

- ``/metrics`` only (``/`` names it; anything else is 404), GET only;
- HTTP basic auth, compared in constant time, checked before anything else is looked at;
- TLS (``certfile``/``keyfile``, TLS 1.2 or later) with optional client certificates (mTLS),
  the handshake done in the connection's own thread with a timeout;
- an idle timeout per connection, and no server version in the responses.

Every option can also come from the environment, so ``configure()`` and the demo, which call
``start_metrics_server()`` without arguments, can be secured without code:
``OTEL_JOBTRACK_METRICS_USERNAME``/``_PASSWORD``, ``OTEL_JOBTRACK_METRICS_CERTFILE``/
``_KEYFILE`` and ``OTEL_JOBTRACK_METRICS_CLIENT_CAFILE``. Arguments win over the environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

logger = logging.getLogger("otel_jobtrack")

METRICS_PATH = "/metrics"
REQUEST_TIMEOUT = 30.0
"""Seconds a connection may stay silent (TLS handshake, request) before it is closed."""

ENV_USERNAME = "OTEL_JOBTRACK_METRICS_USERNAME"
ENV_PASSWORD = "OTEL_JOBTRACK_METRICS_PASSWORD"
ENV_CERTFILE = "OTEL_JOBTRACK_METRICS_CERTFILE"
ENV_KEYFILE = "OTEL_JOBTRACK_METRICS_KEYFILE"
ENV_CLIENT_CAFILE = "OTEL_JOBTRACK_METRICS_CLIENT_CAFILE"

SERVER = "otel-jobtrack"
_LANDING = b"otel-jobtrack: metrics are served at /metrics\n"
_AUTHENTICATE = ("WWW-Authenticate", 'Basic realm="metrics", charset="UTF-8"')

PathLike = str | os.PathLike[str]


class BasicAuth:
    """One username and password; only their SHA-256 digests are kept.

    Comparing fixed-length digests with ``hmac.compare_digest`` takes the same time whatever
    the guess, so response times tell an attacker nothing about how close a guess was.
    """

    __slots__ = ("_password", "_username", "username")

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise ValueError("basic auth needs both a username and a password")
        if ":" in username:
            raise ValueError("a basic auth username cannot contain ':'")
        self.username = username
        self._username = _digest(username.encode("utf-8"))
        self._password = _digest(password.encode("utf-8"))

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=<hidden>)"

    def check(self, header: str | None) -> bool:
        """``True`` if an ``Authorization`` header carries these credentials."""
        if not header:
            return False
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        username, colon, password = decoded.partition(b":")
        if not colon:
            return False
        # Both comparisons always run: which part was wrong must not show in the timing.
        user_ok = hmac.compare_digest(_digest(username), self._username)
        password_ok = hmac.compare_digest(_digest(password), self._password)
        return user_ok & password_ok


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def make_app(
    registry: Collector = REGISTRY,
    *,
    auth: BasicAuth | None = None,
    disable_compression: bool = False,
) -> WSGIApplication:
    """The WSGI app of the server: auth first, then ``/metrics`` (``/`` says where), else 404."""
    from otel_jobtrack.exporters.prometheus.app import (
        metrics_wsgi_app,  # prometheus.py imports this module
    )

    metrics = metrics_wsgi_app(registry, disable_compression=disable_compression)

    def app(environ: WSGIEnvironment, respond: StartResponse) -> Iterable[bytes]:
        def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            # wsgiref would add ``Server: WSGIServer/0.2 CPython/3.x.y``; say less.
            return respond(status, [*headers, ("Server", SERVER)], *exc)

        if auth is not None and not auth.check(environ.get("HTTP_AUTHORIZATION")):
            return _respond(start_response, "401 Unauthorized", b"Unauthorized\n", _AUTHENTICATE)
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in (METRICS_PATH, "/"):
            return _respond(start_response, "404 Not Found", b"Not Found\n")
        if method != "GET":
            return _respond(
                start_response, "405 Method Not Allowed", b"Method Not Allowed\n", ("Allow", "GET")
            )
        if path == "/":
            return _respond(start_response, "200 OK", _LANDING)
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


def _respond(
    start_response: StartResponse, status: str, body: bytes, *headers: tuple[str, str]
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


class _Handler(WSGIRequestHandler):
    """Quiet, with an idle timeout, and without the Python version in a ``Server`` header."""

    server_version = SERVER
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """One thread per connection; with TLS, the handshake happens in that thread."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None
    handshake_timeout = REQUEST_TIMEOUT

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        context = self.ssl_context
        if context is not None:
            try:
                request.settimeout(self.handshake_timeout)
                request = context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                request.do_handshake()
            except (OSError, ValueError) as exc:
                # Plain HTTP, no or an untrusted client certificate, a silent client.
                logger.debug("otel-jobtrack: TLS handshake with %s failed: %s", client_address, exc)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that disconnects or times out is not worth a traceback on stderr.
        logger.debug("otel-jobtrack: error serving %s", client_address, exc_info=True)

    @property
    def url(self) -> str:
        """Where the metrics are, e.g. ``https://127.0.0.1:9464/metrics``."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        host = f"[{host}]" if ":" in str(host) else str(host)
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}{METRICS_PATH}"


def ssl_context(
    certfile: PathLike,
    keyfile: PathLike | None = None,
    *,
    client_cafile: PathLike | None = None,
    client_capath: PathLike | None = None,
    client_auth_required: bool | None = None,
    protocol: int = ssl.PROTOCOL_TLS_SERVER,
    tls_min_version: ssl.TLSVersion | None = None,
    tls_max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """The server's TLS settings; client certificates are required when a client CA is given
    (``client_auth_required=False`` makes them optional instead)."""
    context = ssl.SSLContext(protocol)
    context.minimum_version = tls_min_version or ssl.TLSVersion.TLSv1_2
    if tls_max_version is not None:
        context.maximum_version = tls_max_version
    context.load_cert_chain(certfile, keyfile)
    has_ca = client_cafile is not None or client_capath is not None
    if has_ca:
        context.load_verify_locations(client_cafile, client_capath)
    if client_auth_required is None:
        client_auth_required = has_ca
    if client_auth_required:
        if not has_ca:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED
    elif has_ca:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def start_server(
    port: int,
    addr: str = "localhost",
    registry: Collector = REGISTRY,
    *,
    certfile: PathLike | None = None,
    keyfile: PathLike | None = None,
    client_cafile: PathLike | None = None,
    client_capath: PathLike | None = None,
    client_auth_required: bool | None = None,
    protocol: int = ssl.PROTOCOL_TLS_SERVER,
    tls_min_version: ssl.TLSVersion | None = None,
    tls_max_version: ssl.TLSVersion | None = None,
    username: str | None = None,
    password: str | None = None,
    disable_compression: bool = False,
    request_timeout: float = REQUEST_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> tuple[MetricsServer, threading.Thread]:
    """Serve ``registry`` at ``http(s)://addr:port/metrics`` from a daemon thread.

    Same TLS arguments as ``prometheus_client.start_http_server``, plus ``username`` and
    ``password`` for basic auth. Options left ``None`` are read from the environment (see the
    module doc). Returns ``(server, thread)``; stop with ``server.shutdown()`` and
    ``server.server_close()``.
    """
    env = os.environ if environ is None else environ
    username = username if username is not None else env.get(ENV_USERNAME) or None
    password = password if password is not None else env.get(ENV_PASSWORD) or None
    certfile = certfile if certfile is not None else env.get(ENV_CERTFILE) or None
    keyfile = keyfile if keyfile is not None else env.get(ENV_KEYFILE) or None
    if client_cafile is None and client_capath is None:
        client_cafile = env.get(ENV_CLIENT_CAFILE) or None
    if not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive seconds, got {request_timeout!r}")

    auth = None
    if username is not None or password is not None:
        auth = BasicAuth(username or "", password or "")
    context = None
    if certfile is not None:
        context = ssl_context(
            certfile,
            keyfile,
            client_cafile=client_cafile,
            client_capath=client_capath,
            client_auth_required=client_auth_required,
            protocol=protocol,
            tls_min_version=tls_min_version,
            tls_max_version=tls_max_version,
        )
    elif keyfile is not None or client_cafile is not None or client_capath is not None:
        raise ValueError("keyfile and client CA options need certfile (TLS) too")
    elif client_auth_required:
        raise ValueError("client_auth_required needs certfile (TLS) too")

    family, host = _family(addr, port)
    handler = type("Handler", (_Handler,), {"timeout": request_timeout})
    server_class = type(
        "Server",
        (MetricsServer,),
        {
            "address_family": family,
            "ssl_context": context,
            "handshake_timeout": request_timeout,
        },
    )
    server: MetricsServer = server_class((host, port), handler)
    server.set_app(make_app(registry, auth=auth, disable_compression=disable_compression))
    if auth is not None and context is None and not _is_loopback(server.server_address[0]):
        logger.warning(
            "otel-jobtrack: /metrics on %s uses basic auth without TLS: the password crosses "
            "the network in clear text (give certfile= and keyfile=)",
            addr,
        )
    thread = threading.Thread(
        target=server.serve_forever, name="otel-jobtrack-metrics", daemon=True
    )
    thread.start()
    return server, thread


def _family(addr: str, port: int) -> tuple[socket.AddressFamily, str]:
    """IPv4 or IPv6, whichever ``addr`` resolves to first (as prometheus_client does)."""
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False
