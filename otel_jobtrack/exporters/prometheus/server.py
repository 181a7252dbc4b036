"""The ``/metrics`` HTTP server: prometheus_client's exposition behind TLS, basic auth, one path.

prometheus_client's own ``start_http_server`` serves the metrics on every path (a proxy rule
that protects ``/metrics`` does not cover ``/anything``), has no authentication, runs the TLS
handshake in its accept loop, and gives every connection a thread for as long as the client
likes. This server keeps prometheus_client's exposition (content negotiation, gzip,
``name[]`` filtering) and adds:

- ``/metrics`` only, literally (``/`` names it; anything else, ``/%6detrics`` and
  ``//metrics`` included, is 404; a query string is allowed), GET only;
- HTTP basic auth, compared in constant time, checked before anything else is looked at and
  before any rendering;
- TLS (``certfile``/``keyfile``, TLS 1.2 or later) with optional client certificates (mTLS),
  the handshake done without blocking anyone, under the request deadline;
- the transport of :mod:`.httpd`: a cap on connections, whole-request deadlines, header
  limits, one I/O thread and a fixed pool of workers, and no server version in the responses.

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
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from otel_jobtrack.exporters.prometheus.httpd import SERVER, HTTPServer, Limits, Request, Response

logger = logging.getLogger("otel_jobtrack")

METRICS_PATH = "/metrics"
LANDING_PATH = "/"
REQUEST_TIMEOUT = Limits.request_timeout
"""Seconds from accepting a connection to its complete request head (TLS handshake included),
however slowly the bytes arrive."""
RESPONSE_TIMEOUT = Limits.response_timeout
"""Seconds to deliver a rendered response, however slowly the client reads."""
MAX_CONNECTIONS = Limits.max_connections
MAX_HEADER_BYTES = Limits.max_header_bytes
MAX_HEADER_COUNT = Limits.max_header_count
WORKERS = Limits.workers

ENV_USERNAME = "OTEL_JOBTRACK_METRICS_USERNAME"
ENV_PASSWORD = "OTEL_JOBTRACK_METRICS_PASSWORD"
ENV_CERTFILE = "OTEL_JOBTRACK_METRICS_CERTFILE"
ENV_KEYFILE = "OTEL_JOBTRACK_METRICS_KEYFILE"
ENV_CLIENT_CAFILE = "OTEL_JOBTRACK_METRICS_CLIENT_CAFILE"

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


def gate(
    auth: BasicAuth | None, authorization: str | None, method: str, path: str
) -> Response | None:
    """What the server answers without rendering: 401 without the credentials (whatever the
    path), 404 for any path but the literal ``/metrics`` and ``/``, 405 for any method but
    GET, the landing page for ``/``; ``None`` when the metrics should be rendered."""
    if auth is not None and not auth.check(authorization):
        return Response("401 Unauthorized", b"Unauthorized\n", (_AUTHENTICATE,))
    if path not in (METRICS_PATH, LANDING_PATH):
        return Response("404 Not Found", b"Not Found\n")
    if method != "GET":
        return Response("405 Method Not Allowed", b"Method Not Allowed\n", (("Allow", "GET"),))
    if path == LANDING_PATH:
        return Response("200 OK", _LANDING)
    return None


def literal_path(environ: WSGIEnvironment) -> str | None:
    """The request's path as the client wrote it, when the WSGI server tells
    (``RAW_URI``: gunicorn; ``REQUEST_URI``: uWSGI, mod_wsgi and this server)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not isinstance(raw, str):
        return None
    return raw.partition("?")[0]


def encoded_path(environ: WSGIEnvironment) -> bool:
    """``True`` if the client percent-encoded its path (``/%6detrics``). The WSGI server
    decodes ``PATH_INFO``, so such a request can reach the metrics where a proxy rule on the
    literal ``/metrics`` did not see it; only a server that passes the raw URI lets us tell."""
    raw = literal_path(environ)
    return raw is not None and "%" in raw


def literal_only_wsgi(app: WSGIApplication) -> WSGIApplication:
    """``app``, refusing (404) requests whose path was percent-encoded."""

    def literal_only(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if encoded_path(environ):
            return _respond(start_response, "404 Not Found", b"Not Found\n")
        return app(environ, start_response)

    return literal_only


def literal_only_asgi(app: Any) -> Any:
    """The same for an ASGI app, from the scope's ``raw_path`` (uvicorn, hypercorn, daphne
    pass it)."""

    async def literal_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = scope.get("raw_path")
        if (
            scope.get("type") == "http"
            and isinstance(raw, bytes)
            and b"%" in raw.partition(b"?")[0]  # an encoded query (name%5B%5D=...) is fine
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"Not Found\n"})
            return
        await app(scope, receive, send)

    return literal_only


def make_app(
    registry: Collector = REGISTRY,
    *,
    auth: BasicAuth | None = None,
    disable_compression: bool = False,
) -> WSGIApplication:
    """The WSGI app of the server: auth first, then ``/metrics`` (``/`` says where), else 404.

    Mounted in a WSGI server of your own, ``PATH_INFO`` arrives percent-decoded; when the
    server also passes the raw request URI, a path that was encoded (``/%6detrics``) is 404,
    so a proxy rule on the literal ``/metrics`` cannot be bypassed.
    """
    from otel_jobtrack.exporters.prometheus.app import (
        metrics_wsgi_app,  # prometheus.py imports this module
    )

    metrics = metrics_wsgi_app(registry, disable_compression=disable_compression)

    def app(environ: WSGIEnvironment, respond: StartResponse) -> Iterable[bytes]:
        def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            # A WSGI server would add e.g. ``Server: WSGIServer/0.2 CPython/3.x.y``; say less.
            return respond(status, [*headers, ("Server", SERVER)], *exc)

        path = environ.get("PATH_INFO", "")
        if encoded_path(environ):
            path = "%"  # whatever it decodes to, never the metrics
        verdict = gate(
            auth,
            environ.get("HTTP_AUTHORIZATION"),
            environ.get("REQUEST_METHOD", "GET"),
            path,
        )
        if verdict is not None:
            return _respond(start_response, verdict.status, verdict.body, *verdict.headers)
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


class MetricsServer(HTTPServer):
    """The transport of :mod:`.httpd` with the ``/metrics`` gate in front of the app."""

    @property
    def url(self) -> str:
        """Where the metrics are, e.g. ``https://127.0.0.1:9464/metrics``."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        host = f"[{host}]" if ":" in str(host) else str(host)
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}{METRICS_PATH}"


def _screen(auth: BasicAuth | None) -> Any:
    def screen(request: Request) -> Response | None:
        return gate(auth, request.header("authorization"), request.method, request.path)

    return screen


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
    response_timeout: float = RESPONSE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_header_count: int = MAX_HEADER_COUNT,
    workers: int = WORKERS,
    environ: Mapping[str, str] | None = None,
) -> tuple[MetricsServer, threading.Thread]:
    """Serve ``registry`` at ``http(s)://addr:port/metrics`` from a daemon thread.

    Same TLS arguments as ``prometheus_client.start_http_server``, plus ``username`` and
    ``password`` for basic auth. Options left ``None`` are read from the environment (see the
    module doc). The limits (``max_connections``, ``request_timeout``, ``response_timeout``,
    ``max_header_bytes``, ``max_header_count``, ``workers``) are described in :mod:`.httpd`.
    Returns ``(server, thread)``; stop with ``server.shutdown()`` and ``server.server_close()``.
    """
    env = os.environ if environ is None else environ
    username = username if username is not None else env.get(ENV_USERNAME) or None
    password = password if password is not None else env.get(ENV_PASSWORD) or None
    certfile = certfile if certfile is not None else env.get(ENV_CERTFILE) or None
    keyfile = keyfile if keyfile is not None else env.get(ENV_KEYFILE) or None
    if client_cafile is None and client_capath is None:
        client_cafile = env.get(ENV_CLIENT_CAFILE) or None
    limits = Limits(
        max_connections=max_connections,
        request_timeout=request_timeout,
        response_timeout=response_timeout,
        max_header_bytes=max_header_bytes,
        max_header_count=max_header_count,
        workers=workers,
    )

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
    server = MetricsServer(
        (host, port),
        family,
        # The screen checks auth, path and method before a request reaches the app.
        make_app(registry, disable_compression=disable_compression),
        screen=_screen(auth),
        ssl_context=context,
        limits=limits,
    )
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
