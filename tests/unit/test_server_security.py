"""The /metrics endpoint's security: TLS, mTLS, basic auth, one path, loopback by default.

Certificates are made at test time with the ``openssl`` command (no key is committed). The
clients are real: urllib with an SSL context trusting the test CA, raw sockets, and a real
Prometheus scraping with ``scheme: https``, ``tls_config`` and ``basic_auth``.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import ipaddress
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_jobtrack import start_metrics_server, track_run
from otel_jobtrack.exporters.prometheus.server import BasicAuth, MetricsServer, start_server
from tests.backends import PrometheusServer, free_port
from tests.helpers import value

USER = "scraper"
PASSWORD = "correct horse battery staple ✓"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    """A client certificate the test CA did not sign."""
    rogue_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def _key_and_csr(directory: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip


def _sign(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
        "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip


def _self_signed_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _self_signed_ca(d, "ca")
    _self_signed_ca(d, "rogue-ca")
    _key_and_csr(d, "server", "/CN=localhost")
    _sign(
        d,
        "server",
        "ca",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n",
    )
    for name, ca in (("client", "ca"), ("rogue", "rogue-ca")):
        _key_and_csr(d, name, f"/CN={name}")
        _sign(d, name, ca, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return Pki(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        rogue_cert=d / "rogue.pem",
        rogue_key=d / "rogue.key",
    )


@contextmanager
def serving(**options: Any) -> Iterator[MetricsServer]:
    server, thread = start_metrics_server(port=free_port(), addr="127.0.0.1", **options)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def get(
    url: str,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    method: str = "GET",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _runs() -> None:
    for tenant in ("acme", "acme", "globex"):
        with track_run("secure.sync", kind="resource", tenant=tenant) as run:
            run.add_resources(2)


def test_tls_and_basic_auth_with_a_real_client(pki: Pki) -> None:
    _runs()
    with serving(
        certfile=pki.server_cert, keyfile=pki.server_key, username=USER, password=PASSWORD
    ) as server:
        url = server.url
        assert url.startswith("https://127.0.0.1:") and url.endswith("/metrics")
        trusted = client_context(pki)

        status, headers, body = get(url, basic(USER, PASSWORD), trusted)
        assert status == 200
        text = body.decode()
        assert value("jobtrack_runs_total", text, tenant="acme", state="success") == 2
        assert value("jobtrack_resources_total", text, tenant="globex") == 2
        assert headers["Server"] == "otel-jobtrack"  # no Python version on display

        gz_headers = {**basic(USER, PASSWORD), "Accept-Encoding": "gzip"}
        status, headers, body = get(url, gz_headers, trusted)
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(body).decode().count("jobtrack_runs_total{") == 2 * 3

        for bad in (
            {},
            basic(USER, "wrong"),
            basic("someone", PASSWORD),
            basic(USER, PASSWORD[:-1]),
            basic(USER + ":", PASSWORD),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": "Basic " + base64.b64encode(USER.encode()).decode()},
            {"Authorization": basic(USER, PASSWORD)["Authorization"].replace("Basic", "Bearer")},
        ):
            status, headers, body = get(url, bad, trusted)
            assert status == 401, bad
            assert headers["WWW-Authenticate"].startswith('Basic realm="metrics"')
            assert b"jobtrack" not in body and b"acme" not in body

        # Not over plain HTTP, and not to a client that does not trust the CA.
        with pytest.raises((OSError, http.client.HTTPException)):
            get(url.replace("https://", "http://"), basic(USER, PASSWORD))
        with pytest.raises(urllib.error.URLError) as untrusted:
            get(url, basic(USER, PASSWORD), ssl.create_default_context())
        assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)


def test_only_metrics_path_and_get(pki: Pki) -> None:
    _runs()
    with serving() as server:
        base = server.url.removesuffix("/metrics")
        status, _, body = get(base + "/metrics")
        assert status == 200 and b"jobtrack_runs_total" in body
        status, _, body = get(base + "/")
        assert status == 200 and b"/metrics" in body and b"jobtrack_runs" not in body
        for path in ("/favicon.ico", "/metrics/", "/metrics.txt", "/anything", "/a/metrics"):
            status, _, body = get(base + path)
            assert status == 404, path
            assert b"jobtrack" not in body
        status, headers, body = get(base + "/metrics", method="POST")
        assert status == 405 and headers["Allow"] == "GET" and b"jobtrack" not in body

        # prometheus_client's name[] filter still works on /metrics.
        status, _, body = get(base + "/metrics?name[]=jobtrack_resources_total")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert status == 200 and names == {"jobtrack_resources"}

    with serving(username=USER, password=PASSWORD) as server:
        base = server.url.removesuffix("/metrics")
        # Credentials are checked first: without them nothing, not even a 404, is revealed.
        for path in ("/metrics", "/", "/anything"):
            assert get(base + path)[0] == 401
        assert get(base + "/anything", basic(USER, PASSWORD))[0] == 404


def test_client_certificates(pki: Pki) -> None:
    _runs()
    with serving(certfile=pki.server_cert, keyfile=pki.server_key, client_cafile=pki.ca) as server:
        status, _, body = get(
            server.url, context=client_context(pki, pki.client_cert, pki.client_key)
        )
        assert status == 200 and b"jobtrack_runs_total" in body
        for context in (client_context(pki), client_context(pki, pki.rogue_cert, pki.rogue_key)):
            with pytest.raises((OSError, http.client.HTTPException)):
                get(server.url, context=context)


def test_a_silent_client_does_not_stall_the_scrapes(pki: Pki) -> None:
    """prometheus_client's server does the TLS handshake in its accept loop; this one must not."""
    _runs()
    with serving(certfile=pki.server_cert, keyfile=pki.server_key, request_timeout=60) as server:
        host, port = server.server_address[:2]
        silent = [socket.create_connection((str(host), port), timeout=5) for _ in range(3)]
        try:
            status, _, body = get(server.url, context=client_context(pki))
            assert status == 200 and b"jobtrack_runs_total" in body
        finally:
            for sock in silent:
                sock.close()


def test_binds_to_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_PROMETHEUS_HOST", raising=False)
    server, thread = start_metrics_server(port=free_port())
    try:
        assert ipaddress.ip_address(server.server_address[0]).is_loopback
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_security_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """``configure()`` and the demo call ``start_metrics_server()`` bare: env vars secure it."""
    _runs()
    monkeypatch.setenv("OTEL_JOBTRACK_METRICS_USERNAME", USER)
    monkeypatch.setenv("OTEL_JOBTRACK_METRICS_PASSWORD", PASSWORD)
    monkeypatch.setenv("OTEL_JOBTRACK_METRICS_CERTFILE", str(pki.server_cert))
    monkeypatch.setenv("OTEL_JOBTRACK_METRICS_KEYFILE", str(pki.server_key))
    monkeypatch.setenv("OTEL_JOBTRACK_METRICS_CLIENT_CAFILE", str(pki.ca))
    with serving() as server:
        mtls = client_context(pki, pki.client_cert, pki.client_key)
        assert server.url.startswith("https://")
        assert get(server.url, context=mtls)[0] == 401
        status, _, body = get(server.url, basic(USER, PASSWORD), mtls)
        assert status == 200 and b"jobtrack_runs_total" in body
        with pytest.raises((OSError, http.client.HTTPException)):
            get(server.url, basic(USER, PASSWORD), client_context(pki))


@pytest.mark.parametrize(
    "options",
    [
        {"username": USER},
        {"password": PASSWORD},
        {"username": "a:b", "password": PASSWORD},
        {"keyfile": "server.key"},
        {"client_cafile": "ca.pem"},
        {"client_auth_required": True},
        {"request_timeout": 0},
    ],
)
def test_incomplete_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        start_server(free_port(), "127.0.0.1", environ={}, **options)


def test_password_is_not_kept_or_shown() -> None:
    auth = BasicAuth(USER, PASSWORD)
    assert PASSWORD not in repr(auth)
    kept = [getattr(auth, slot) for slot in BasicAuth.__slots__]
    assert not any(PASSWORD in str(v) or PASSWORD.encode() == v for v in kept)
    assert auth.check(basic(USER, PASSWORD)["Authorization"])


@pytest.mark.backend
def test_real_prometheus_scrapes_over_https_with_basic_auth_and_client_cert(
    pki: Pki, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    _runs()
    with serving(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        client_cafile=pki.ca,
        username=USER,
        password=PASSWORD,
    ) as server:
        target = f"127.0.0.1:{server.server_address[1]}"
        tls = {
            "ca_file": str(pki.ca),
            "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key),
        }

        def job(name: str, password: str) -> dict[str, Any]:
            return {
                "job_name": name,
                "scheme": "https",
                "tls_config": tls,
                "basic_auth": {"username": USER, "password": password},
                "static_configs": [{"targets": [target]}],
            }

        prom = prometheus_factory(
            extra_scrape_configs=[job("secure", PASSWORD), job("wrong-password", "guess")]
        )
        runs = prom.wait_for('jobtrack_runs_total{job="secure"} > 0', lambda r: len(r) == 2)
        assert {r["metric"]["tenant"]: float(r["value"][1]) for r in runs} == {
            "acme": 2,
            "globex": 1,
        }
        assert prom.query('up{job="secure"} == 1')
        prom.wait_for('up{job="wrong-password"} == 0')
        assert not prom.query('jobtrack_runs_total{job="wrong-password"}')
        wrong = [t for t in prom.targets() if t["labels"]["job"] == "wrong-password"]
        assert "401" in wrong[0]["lastError"]
