"""A small client for the Prometheus HTTP query API, shared by ``status`` and ``report``.

It speaks to anything that serves ``/api/v1/query`` and ``/api/v1/query_range``: Prometheus,
VictoriaMetrics, Mimir or Thanos (give the URL prefix, e.g. ``https://mimir/prometheus``).
Standard library only (``urllib``), so the command runs wherever the package is installed.
Every failure becomes a :class:`QueryError` whose message says what to check, because these
commands run in cron jobs and CI steps where a traceback helps nobody.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1
EXIT_USAGE: Final = 2
EXIT_QUERY_ERROR: Final = 3
EXIT_NO_DATA: Final = 4

PASSWORD_ENV: Final = "JOBTRACK_PROMETHEUS_PASSWORD"
TOKEN_ENV: Final = "JOBTRACK_PROMETHEUS_TOKEN"
_MAX_GET_URL: Final = 8000
_PARALLEL_QUERIES: Final = 4


class ToolError(Exception):
    """A problem to report in one message, with the exit status the command ends with."""

    exit_code: int = EXIT_QUERY_ERROR


class QueryError(ToolError):
    """The query API could not be reached or refused to answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoDataError(ToolError):
    """The API answered, but holds no ``jobtrack_*`` data for the question asked."""

    exit_code = EXIT_NO_DATA


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: ``(unix time, value)`` points in time order."""

    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


@dataclass
class PromClient:
    """Query API of one Prometheus-compatible server.

    ``url`` is the base URL (``http://prometheus:9090``); user information in it
    (``https://user:pass@host``) is moved into a basic-auth header.
    """

    url: str
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    timeout: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QueryError(
                f"--prometheus must be an http:// or https:// URL, not {self.url!r}",
            )
        if parts.username is not None:
            self.username = self.username or urllib.parse.unquote(parts.username)
            if parts.password is not None:
                self.password = self.password or urllib.parse.unquote(parts.password)
            netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            if parts.port:
                netloc += f":{parts.port}"
            parts = parts._replace(netloc=netloc)
        self.url = urllib.parse.urlunsplit(parts._replace(query="", fragment="")).rstrip("/")
        if self.username is not None and self.bearer_token is not None:
            raise QueryError("give either basic-auth credentials or a bearer token, not both")
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._context = self._ssl_context()

    # -- connection --------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            raise QueryError(f"cannot load the TLS files: {e}") from None
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "otel-jobtrack"}
        headers.update(self.headers)
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        elif self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        return headers

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """``GET`` (or ``POST`` for long queries) an API path; return the ``data`` member."""
        url = f"{self.url}{path}"
        body: bytes | None = None
        headers = self._request_headers()
        encoded = urllib.parse.urlencode(params or {})
        if len(url) + len(encoded) + 1 > _MAX_GET_URL:
            body = encoded.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif encoded:
            url = f"{url}?{encoded}"
        request = urllib.request.Request(url, data=body, headers=headers)
        where = f"{self.url}{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as r:
                raw = r.read()
                content_type = r.headers.get("Content-Type", "")
                status = r.status
        except urllib.error.HTTPError as e:
            raise self._http_error(e, where, params) from None
        except urllib.error.URLError as e:
            raise self._connection_error(e.reason, where) from None
        except (TimeoutError, OSError) as e:
            raise self._connection_error(e, where) from None
        return self._decode(raw, content_type, status, where, params)

    def _http_error(
        self, error: urllib.error.HTTPError, where: str, params: Mapping[str, str] | None
    ) -> QueryError:
        try:
            raw = error.read()
        except OSError:
            raw = b""
        detail = _api_error(raw) or raw.decode("utf-8", "replace").strip()[:300]
        code = error.code
        if code == 401:
            hint = (
                "the credentials were refused"
                if "Authorization" in self._request_headers()
                else "it needs credentials"
            )
            return QueryError(
                f"{where} answered 401 Unauthorized: {hint} "
                "(--user with --password/--password-file, or --bearer-token)",
                code,
            )
        if code == 403:
            return QueryError(
                f"{where} answered 403 Forbidden: these credentials may not query it", code
            )
        if code == 404:
            return QueryError(
                f"{where} not found (HTTP 404): is {self.url} the base URL of a "
                "Prometheus-compatible query API? (Mimir: add its /prometheus prefix)",
                code,
            )
        query = (params or {}).get("query")
        suffix = f"\n  query: {query}" if query else ""
        return QueryError(f"{where} answered HTTP {code}: {detail or error.reason}{suffix}", code)

    def _connection_error(self, reason: object, where: str) -> QueryError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return QueryError(
                f"TLS certificate of {self.url} not trusted ({reason.verify_message}): "
                "pass --ca-file with the CA that signed it, or --insecure to skip the check"
            )
        if isinstance(reason, ssl.SSLError):
            return QueryError(f"TLS error talking to {self.url}: {reason}")
        if isinstance(reason, ConnectionRefusedError):
            return QueryError(f"cannot reach {self.url}: connection refused (is it running?)")
        if isinstance(reason, socket.gaierror):
            return QueryError(f"cannot reach {self.url}: unknown host ({reason.strerror})")
        if isinstance(reason, TimeoutError | socket.timeout):
            return QueryError(f"no answer from {where} within {self.timeout:g}s (--timeout)")
        return QueryError(f"cannot reach {self.url}: {reason}")

    def _decode(
        self,
        raw: bytes,
        content_type: str,
        status: int,
        where: str,
        params: Mapping[str, str] | None,
    ) -> Any:
        try:
            payload = json.loads(raw)
        except ValueError:
            kind = content_type.split(";")[0] or "no content type"
            raise QueryError(
                f"{where} did not answer with Prometheus API JSON (HTTP {status}, {kind}): "
                f"is {self.url} the base URL of a Prometheus-compatible query API?"
            ) from None
        if not isinstance(payload, dict) or "status" not in payload:
            raise QueryError(f"{where} answered JSON that is not a Prometheus API response")
        if payload["status"] != "success":
            query = (params or {}).get("query")
            suffix = f"\n  query: {query}" if query else ""
            raise QueryError(f"{where}: {payload.get('error', 'query failed')}{suffix}")
        for warning in payload.get("warnings") or ():
            if warning not in self.warnings:
                self.warnings.append(str(warning))
        return payload.get("data")

    # -- API ----------------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Instant query; a scalar answer becomes one sample without labels."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _format_time(at)
        data = self.get_json("/api/v1/query", params)
        kind = data.get("resultType") if isinstance(data, dict) else None
        if kind == "vector":
            return [
                Sample(dict(r.get("metric", {})), _number(r["value"][1])) for r in data["result"]
            ]
        if kind == "scalar":
            return [Sample({}, _number(data["result"][1]))]
        raise QueryError(f"expected an instant vector for {promql!r}, got {kind!r}")

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """Range query from ``start`` to ``end`` every ``step`` seconds."""
        params = {
            "query": promql,
            "start": _format_time(start),
            "end": _format_time(end),
            "step": f"{step:g}",
        }
        data = self.get_json("/api/v1/query_range", params)
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise QueryError(f"expected a range vector for {promql!r}")
        return [
            Series(
                dict(r.get("metric", {})),
                [(float(t), _number(v)) for t, v in r.get("values", [])],
            )
            for r in data["result"]
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts from ``/api/v1/alerts`` (raises :class:`QueryError` with ``status``
        404 where the server has no alerting API, e.g. a plain VictoriaMetrics)."""
        data = self.get_json("/api/v1/alerts")
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if not isinstance(alerts, list):
            raise QueryError(f"{self.url}/api/v1/alerts answered no alert list")
        return alerts

    def run_all(self, calls: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run independent calls a few at a time; the first failure is raised."""
        with ThreadPoolExecutor(max_workers=_PARALLEL_QUERIES) as pool:
            futures = {name: pool.submit(fn) for name, fn in calls.items()}
            return {name: future.result() for name, future in futures.items()}


def _api_error(raw: bytes) -> str | None:
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if isinstance(payload, dict) and payload.get("error"):
        return str(payload["error"])
    return None


def _number(text: object) -> float:
    """API sample values are strings; ``NaN`` (e.g. a quantile over no runs) stays NaN."""
    try:
        return float(str(text))
    except ValueError:
        return math.nan


def _format_time(t: float) -> str:
    return f"{t:.3f}"


# ------------------------------------------------------------------------------ PromQL text


@dataclass(frozen=True)
class Re:
    """A regular-expression label matcher value (``=~``), fully anchored as in PromQL."""

    pattern: str


def label_matchers(selector: str, **matchers: str | Re | None) -> str:
    """``{a="x", b=~"y", <selector>}``: the given matchers (``None`` skipped) plus the user's
    extra selector text."""
    parts = []
    for name, value in matchers.items():
        if isinstance(value, Re):
            parts.append(f"{name}=~{_quote(value.pattern)}")
        elif value is not None:
            parts.append(f"{name}={_quote(value)}")
    if selector.strip():
        parts.append(selector.strip().strip("{}").strip())
    return "{" + ", ".join(parts) + "}"


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def any_of(values: Sequence[str]) -> Re | None:
    """A matcher for any of ``values`` taken literally (regex characters escaped)."""
    if not values:
        return None
    return Re("|".join(re.escape(v) for v in values))


# ------------------------------------------------------------------------------ arguments


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that queries a server shares."""
    group = parser.add_argument_group("query API")
    group.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="base URL of a Prometheus-compatible query API (Prometheus, VictoriaMetrics, "
        "Mimir with its /prometheus prefix, Thanos)",
    )
    group.add_argument("--user", help="basic-auth user name")
    group.add_argument(
        "--password", help=f"basic-auth password (visible to ps: prefer ${PASSWORD_ENV})"
    )
    group.add_argument("--password-file", metavar="FILE", help="read the password from FILE")
    group.add_argument("--bearer-token", help=f"bearer token (visible to ps: prefer ${TOKEN_ENV})")
    group.add_argument(
        "--bearer-token-file", metavar="FILE", help="read the bearer token from FILE"
    )
    group.add_argument("--ca-file", metavar="FILE", help="CA certificates to verify TLS with")
    group.add_argument("--cert-file", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--key-file", metavar="FILE", help="key of --cert-file")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    group.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra HTTP header, e.g. 'X-Scope-OrgID: team-a' for Mimir (repeatable)",
    )
    group.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait per request (default 30)"
    )
    group.add_argument(
        "--selector",
        default="",
        metavar="MATCHERS",
        help="extra label matchers for every jobtrack_* series, e.g. 'job=\"billing\"' "
        "(use scrape-target labels; the cadence gauges carry no tenant)",
    )


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise QueryError(f"cannot read the {what} file: {e}") from None


def client_from_args(args: argparse.Namespace) -> PromClient:
    """A :class:`PromClient` from :func:`add_connection_arguments` options and environment."""
    url_parts = urllib.parse.urlsplit(args.prometheus)
    user_in_url = url_parts.username is not None
    password = args.password
    if args.password_file:
        password = _read_secret(args.password_file, "password")
    if password is None and url_parts.password is None:
        password = os.environ.get(PASSWORD_ENV)
    token = args.bearer_token
    if args.bearer_token_file:
        token = _read_secret(args.bearer_token_file, "bearer token")
    if token is None and not args.user and not user_in_url:
        token = os.environ.get(TOKEN_ENV) or None
    headers: dict[str, str] = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise QueryError(f"--header must look like 'Name: value', not {header!r}")
        headers[name.strip()] = value.strip()
    if args.timeout <= 0:
        raise QueryError("--timeout must be positive")
    return PromClient(
        args.prometheus,
        username=args.user,
        password=password,
        bearer_token=token,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        insecure=args.insecure,
        timeout=args.timeout,
        headers=headers,
    )
