"""The Prometheus API client against a small in-process HTTP server: headers, errors, parsing.

Every answer a real server gives in trouble (401, 403, 404, 400 with an API error, HTML from a
login page, a timeout, a refused connection) must become one message that says what to check.
The real Prometheus versions of these cases are in tests/backend/test_status_report.py.
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from otel_jobtrack.tools import query
from otel_jobtrack.tools.query import PromClient, QueryError
from tests.backends import free_port


class _Api:
    """Answers each request with ``(status, content type, body)`` and records the request."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                owner.requests.append((self.command, self.path, dict(self.headers), body))
                time.sleep(owner.delay)
                status, ctype, payload = owner.answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _reply
            do_POST = _reply

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self, payload: object, status: int = 200) -> None:
        self.answer = (status, "application/json", json.dumps(payload).encode())


@pytest.fixture
def api() -> Iterator[_Api]:
    server = _Api()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1.0, v]} for m, v in samples],
        },
    }


def test_instant_and_range_queries_are_parsed(api: _Api) -> None:
    api.json(_vector(({"job_name": "a"}, "3"), ({"job_name": "b"}, "NaN")))
    samples = PromClient(api.url + "/").query("up", at=1700000000.5)
    assert [(dict(s.labels), s.value) for s in samples[:1]] == [({"job_name": "a"}, 3.0)]
    assert math.isnan(samples[1].value)
    method, path, _, _ = api.requests[-1]
    assert method == "GET" and path == "/api/v1/query?query=up&time=1700000000.500"
    api.json(
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"a": "b"}, "values": [[10, "1"], [20, "2"]]}],
            },
        }
    )
    [series] = PromClient(api.url).query_range("x", 10, 20, 10)
    assert list(series.points) == [(10.0, 1.0), (20.0, 2.0)]
    assert "step=10" in api.requests[-1][1]


def test_a_very_long_query_is_posted(api: _Api) -> None:
    api.json(_vector())
    long_query = "sum(" + " + ".join(f'up{{job="j{i}"}}' for i in range(600)) + ")"
    PromClient(api.url).query(long_query)
    method, path, headers, body = api.requests[-1]
    assert method == "POST" and path == "/api/v1/query"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b"query=sum%28up" in body


def test_basic_auth_bearer_and_extra_headers(api: _Api) -> None:
    api.json(_vector())
    PromClient(api.url, username="ops", password="pa:ss").query("up")
    assert api.requests[-1][2]["Authorization"] == "Basic b3BzOnBhOnNz"
    PromClient(api.url, bearer_token="t0k").query("up")
    assert api.requests[-1][2]["Authorization"] == "Bearer t0k"
    user_in_url = api.url.replace("http://", "http://ops:p%40ss@")
    client = PromClient(user_in_url, headers={"X-Scope-OrgID": "team-a"})
    assert client.url == api.url  # no credentials left in the URL (they would be printed)
    client.query("up")
    assert api.requests[-1][2]["Authorization"] == "Basic b3BzOnBAc3M="
    assert api.requests[-1][2]["X-Scope-Orgid"] == "team-a"
    with pytest.raises(QueryError, match="not both"):
        PromClient(api.url, username="a", bearer_token="b")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, b"Unauthorized", "answered 401 Unauthorized: it needs credentials"),
        (403, b"", "answered 403 Forbidden: these credentials may not query it"),
        (404, b"404 page not found", "not found (HTTP 404): is http://"),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 3"}',
            "answered HTTP 400: parse error at char 3\n  query: up{",
        ),
        (503, b"overloaded", "answered HTTP 503: overloaded"),
    ],
)
def test_http_errors_say_what_to_check(api: _Api, status: int, body: bytes, message: str) -> None:
    api.answer = (status, "text/plain", body)
    with pytest.raises(QueryError) as exc:
        PromClient(api.url).query("up{")
    assert message in str(exc.value)
    assert exc.value.status == status


def test_refused_credentials_are_told_apart_from_missing_ones(api: _Api) -> None:
    api.answer = (401, "text/plain", b"")
    with pytest.raises(QueryError, match="the credentials were refused"):
        PromClient(api.url, username="ops", password="x").query("up")


def test_answers_that_are_not_the_prometheus_api(api: _Api) -> None:
    api.answer = (200, "text/html; charset=utf-8", b"<html>login</html>")
    with pytest.raises(
        QueryError, match=r"did not answer with Prometheus API JSON \(HTTP 200, text/html\)"
    ):
        PromClient(api.url).query("up")
    api.json({"hello": "world"})
    with pytest.raises(QueryError, match="not a Prometheus API response"):
        PromClient(api.url).query("up")
    api.json({"status": "error", "error": "query timed out"})
    with pytest.raises(QueryError, match="query timed out"):
        PromClient(api.url).query("up")


def test_server_warnings_are_kept(api: _Api) -> None:
    api.json({**_vector(), "warnings": ["partial response"]})
    client = PromClient(api.url)
    client.query("up")
    client.query("up")
    assert client.warnings == ["partial response"]


def test_timeout_and_refused_connection(api: _Api) -> None:
    api.json(_vector())
    api.delay = 1.0
    with pytest.raises(QueryError, match=r"no answer from .* within 0.2s \(--timeout\)"):
        PromClient(api.url, timeout=0.2).query("up")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(QueryError) as exc:
        PromClient(url).query("up")
    assert str(exc.value) == f"cannot reach {url}: connection refused (is it running?)"


def test_run_all_runs_in_parallel_and_raises_the_first_failure(api: _Api) -> None:
    api.json(_vector())
    api.delay = 0.3
    client = PromClient(api.url)
    started = time.monotonic()
    answers = client.run_all({str(i): (lambda: client.query("up")) for i in range(4)})
    assert set(answers) == {"0", "1", "2", "3"}
    assert time.monotonic() - started < 1.1  # four 0.3 s requests at once, not one by one
    api.delay = 0.0
    api.answer = (500, "text/plain", b"boom")
    with pytest.raises(QueryError, match="HTTP 500"):
        client.run_all({"a": lambda: client.query("up")})


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    query.add_connection_arguments(parser)
    return parser.parse_args(["--prometheus", "http://127.0.0.1:9090", *argv])


def test_secrets_from_files_and_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(query.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(query.TOKEN_ENV, raising=False)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    client = query.client_from_args(_args("--user", "ops", "--password-file", str(secret)))
    assert (client.username, client.password) == ("ops", "from-file")
    monkeypatch.setenv(query.PASSWORD_ENV, "from-env")
    assert query.client_from_args(_args("--user", "ops")).password == "from-env"
    monkeypatch.setenv(query.TOKEN_ENV, "tok")
    assert query.client_from_args(_args()).bearer_token == "tok"
    assert query.client_from_args(_args("--user", "ops")).bearer_token is None
    with pytest.raises(QueryError, match="cannot read the password file"):
        query.client_from_args(_args("--user", "ops", "--password-file", str(tmp_path / "no")))
    with pytest.raises(QueryError, match="--header must look like 'Name: value'"):
        query.client_from_args(_args("--header", "X-Scope-OrgID"))
    client = query.client_from_args(_args("--header", "X-Scope-OrgID: team-a"))
    assert client.headers == {"X-Scope-OrgID": "team-a"}


def test_tls_files_are_checked_when_the_client_is_made(tmp_path: Any) -> None:
    with pytest.raises(QueryError, match="cannot load the TLS files"):
        PromClient("https://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem"))
    insecure = PromClient("https://127.0.0.1:1", insecure=True)
    assert insecure._context is not None
    assert not insecure._context.check_hostname
