"""Real metric backends for tests: Prometheus, promtool, Pushgateway, VictoriaMetrics (with
vmalert, vmagent and vmalert-tool from the same package), Alertmanager and amtool.

Binaries live in ``.cache/backends/bin`` (git-ignored) and are installed by
``scripts/install-backends`` on first use. Every server runs as a subprocess bound to
127.0.0.1 on a free port, in its own directory, with its log captured to a file.

Use from ``tests/conftest.py`` with ``pytest_plugins = ["tests.backends"]`` (or
``from tests.backends import *``) to get the fixtures ``backend_bins``,
``prometheus_factory``, ``prometheus``, ``pushgateway``, ``victoria_metrics``,
``victoria_metrics_factory``, ``vmagent_factory``, ``vmalert_factory``,
``alertmanager_factory``, ``webhook_receiver`` and ``exposition_server``; :func:`promtool` and
:func:`vmalert_tool` run the rule testers, :func:`amtool` Alertmanager's.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

__all__ = [
    "AlertmanagerServer",
    "BIN_DIR",
    "BACKEND_NAMES",
    "CACHE_DIR",
    "INSTALL_SCRIPT",
    "REPO_ROOT",
    "BackendError",
    "ExpositionServer",
    "PrometheusServer",
    "PushgatewayServer",
    "VMALERT_TOOL_PORT",
    "VMAgentServer",
    "VMAlertServer",
    "RedisServer",
    "VictoriaMetricsServer",
    "WebhookReceiver",
    "alertmanager_factory",
    "amtool",
    "backend_bins",
    "bin_path",
    "ensure_backends",
    "exposition_server",
    "free_port",
    "http_request",
    "prometheus",
    "prometheus_factory",
    "promtool",
    "pushgateway",
    "redis_server",
    "victoria_metrics",
    "victoria_metrics_factory",
    "vmagent_factory",
    "vmalert_factory",
    "vmalert_tool",
    "webhook_receiver",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache" / "backends"
BIN_DIR = CACHE_DIR / "bin"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-backends"
BACKEND_NAMES = (
    "prometheus",
    "promtool",
    "pushgateway",
    "victoria-metrics",
    "vmalert",
    "vmagent",
    "vmalert-tool",
    "alertmanager",
    "amtool",
)

READY_TIMEOUT = float(os.environ.get("BACKENDS_READY_TIMEOUT", "30"))
HTTP_TIMEOUT = 10.0


class BackendError(RuntimeError):
    """A backend could not be installed, started, or answered with an error."""


# --------------------------------------------------------------------------- install

_install_lock = threading.Lock()
_installed = False


def _all_present() -> bool:
    return all(os.access(BIN_DIR / name, os.X_OK) for name in BACKEND_NAMES)


def ensure_backends() -> dict[str, Path]:
    """Make sure all backend binaries exist (running the install script once if not)."""
    global _installed
    with _install_lock:
        if not _installed and not _all_present():
            if not INSTALL_SCRIPT.exists():
                raise BackendError(f"install script missing: {INSTALL_SCRIPT}")
            proc = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not _all_present():
                raise BackendError(
                    f"{INSTALL_SCRIPT.relative_to(REPO_ROOT)} failed "
                    f"(exit {proc.returncode}); the real backends are required.\n"
                    f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
                )
        _installed = True
    return {name: BIN_DIR / name for name in BACKEND_NAMES}


def bin_path(name: str) -> Path:
    """Path of a backend binary (one of :data:`BACKEND_NAMES`), installing the backends first
    if needed."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend binary {name!r}; expected one of {BACKEND_NAMES}")
    return ensure_backends()[name]


def promtool(
    *args: str | os.PathLike[str],
    input: str | None = None,
    check: bool = False,
    timeout: float = 60.0,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` and return the completed process (text mode, output captured).

    With ``check=True`` a non-zero exit raises :class:`BackendError` showing the output.
    """
    cmd = [str(bin_path("promtool")), *map(str, args)]
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if check and proc.returncode != 0:
        raise BackendError(
            f"{' '.join(cmd[1:])} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def amtool(
    *args: str | os.PathLike[str], check: bool = False, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``amtool ARGS`` offline (``check-config``, ``config routes test``) and return the
    completed process (text mode, output captured); ``check=True`` raises on a non-zero exit."""
    cmd = [str(bin_path("amtool")), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise BackendError(
            f"amtool {' '.join(cmd[1:])} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


VMALERT_TOOL_PORT = 8880
"""vmalert-tool serves its in-process VictoriaMetrics on this port, hard-coded (no flag)."""
_VMALERT_TOOL_LOCK = Path(tempfile.gettempdir()) / "otel-jobtrack-vmalert-tool.lock"


def vmalert_tool(
    *files: str | os.PathLike[str],
    timeout: float = 600.0,
    port_wait: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``vmalert-tool unittest --disableAlertgroupLabel`` on promtool-format test files.

    vmalert-tool starts an in-process VictoriaMetrics on the fixed port
    :data:`VMALERT_TOOL_PORT` (all interfaces, loopback traffic only) and keeps its data in
    ``$TMPDIR/vmalert-unittest``. So runs are serialised by a lock file shared by every
    checkout on the machine, get a private ``TMPDIR``, and wait (up to ``port_wait`` seconds)
    for the port to be free. Returns the completed process (text, output captured).
    """
    cmd = [str(bin_path("vmalert-tool")), "unittest", "--disableAlertgroupLabel"]
    for path in files:
        cmd += ["--files", str(path)]
    with _VMALERT_TOOL_LOCK.open("a") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _wait_port_free(VMALERT_TOOL_PORT, port_wait)
        env = {**os.environ, "TMPDIR": tmp}
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp, check=False
        )


def _wait_port_free(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise BackendError(
                        f"port {port} stayed busy for {timeout:.0f}s; vmalert-tool needs it"
                    ) from None
        time.sleep(0.5)


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_request(
    method: str,
    url: str,
    data: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> tuple[int, bytes]:
    """Send one HTTP request (loopback only) and return ``(status, body)``.

    HTTP error statuses are returned, not raised; connection errors raise ``URLError``.
    """
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"tests only talk to loopback servers, not {url}")
    body = data.encode() if isinstance(data, str) else data
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


_live_servers: set[_Server] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live_servers):
        server.stop()


# --------------------------------------------------------------------------- base server


class _Server:
    """A backend subprocess on 127.0.0.1:<free port> with its own working directory."""

    binary: str = ""
    ready_path: str = "/-/ready"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.binary}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.port = 0
        self.log_path = self.workdir / f"{self.binary}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- to override
    def _args(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files etc. before start."""

    # -- lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> _Server:
        """Start the process and block until its readiness endpoint answers 200."""
        if self.running:
            return self
        exe = str(bin_path(self.binary))
        self._prepare()
        last_error = ""
        for _attempt in range(3):  # a free port can be taken in between: retry
            self.port = free_port()
            cmd = [exe, *_merge_args(self._args(), self.extra_args)]
            log = self.log_path.open("ab")
            log.write(f"\n=== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            _live_servers.add(self)
            try:
                self._wait_ready()
                return self
            except BackendError as e:
                last_error = str(e)
                in_use = "address already in use" in _tail(self.log_path, 10).lower()
                self.stop()
                if not in_use:
                    break
        raise BackendError(last_error)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BackendError(
                    f"{self.binary} exited with code {self.proc.returncode} during startup; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                status, body = http_request("GET", self.url + self.ready_path, timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except (OSError, urllib.error.URLError) as e:
                last = repr(e)
            time.sleep(0.05)
        raise BackendError(
            f"{self.binary} not ready at {self.url}{self.ready_path} after "
            f"{self.ready_timeout:.0f}s (last: {last}); "
            f"log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout``) and wait for the process."""
        proc, self.proc = self.proc, None
        _live_servers.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        """Stop and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the captured server log."""
        return _tail(self.log_path, lines)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url if self.port else '(not started)'}>"

    # -- HTTP
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET ``path`` (with query ``params``); raise :class:`BackendError` unless 2xx."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(_clean_params(params), doseq=True)
        status, body = http_request("GET", url)
        if not 200 <= status < 300:
            raise BackendError(f"GET {url} -> {status}: {body[:2000]!r}")
        return body


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def _merge_args(defaults: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Defaults plus extra args; an extra ``--flag=value`` replaces the default ``--flag``."""
    overridden = {_flag_name(a) for a in extra if a.startswith("-")}
    return [a for a in defaults if _flag_name(a) not in overridden] + list(extra)


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out[key] = value
    return out


class _PromQueryAPI(_Server):
    """Prometheus-compatible HTTP query API (served by Prometheus and VictoriaMetrics)."""

    def api(self, path: str, params: Mapping[str, Any] | None = None, method: str = "GET") -> Any:
        """Call ``/api/v1/<path>`` and return its ``data`` (raises on ``status: error``)."""
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        body: bytes | None = None
        headers: dict[str, str] = {}
        if params and method == "POST":
            body = urllib.parse.urlencode(_clean_params(params), doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif params:
            url += "?" + urllib.parse.urlencode(_clean_params(params), doseq=True)
        status, raw = http_request(method, url, data=body, headers=headers)
        try:
            payload = json.loads(raw)
        except ValueError:
            raise BackendError(f"{method} {url} -> {status}: {raw[:2000]!r}") from None
        if status != 200 or payload.get("status") != "success":
            raise BackendError(f"{method} {url} -> {status}: {payload}")
        return payload.get("data")

    def _before_query(self) -> None:
        """Hook: make freshly written data visible (VictoriaMetrics flushes)."""

    def query(self, promql: str, time: float | str | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the result list (``[{"metric": {...}, "value": [t, "v"]}]``).

        A scalar/string result is wrapped as one element with an empty ``metric``.
        """
        self._before_query()
        data = self.api("query", {"query": promql, "time": time})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_value(self, promql: str, time: float | str | None = None) -> float | None:
        """Value of a query that yields at most one series (``None`` when empty)."""
        result = self.query(promql, time)
        if not result:
            return None
        if len(result) > 1:
            raise BackendError(f"{promql!r} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def query_range(
        self,
        promql: str,
        start: float | str,
        end: float | str | None = None,
        step: float | str = "1s",
    ) -> list[dict[str, Any]]:
        """Range query; returns the matrix (``[{"metric": {...}, "values": [[t, "v"], ...]}]``)."""
        self._before_query()
        end = time.time() if end is None else end
        data = self.api("query_range", {"query": promql, "start": start, "end": end, "step": step})
        return list(data["result"])

    def series(
        self,
        match: str | Sequence[str],
        start: float | str | None = None,
        end: float | str | None = None,
    ) -> list[dict[str, str]]:
        """Label sets of the series matching the selector(s)."""
        self._before_query()
        matches = [match] if isinstance(match, str) else list(match)
        return list(self.api("series", {"match[]": matches, "start": start, "end": end}))

    def label_names(self, match: str | Sequence[str] | None = None) -> list[str]:
        """All label names (optionally only of series matching ``match``)."""
        self._before_query()
        matches = [match] if isinstance(match, str) else list(match or [])
        return list(self.api("labels", {"match[]": matches or None}))

    def label_values(self, label: str, match: str | Sequence[str] | None = None) -> list[str]:
        """Values of ``label`` (e.g. ``__name__`` for all metric names)."""
        self._before_query()
        matches = [match] if isinstance(match, str) else list(match or [])
        return list(self.api(f"label/{label}/values", {"match[]": matches or None}))

    def metric_names(self) -> list[str]:
        """All stored metric names."""
        return self.label_values("__name__")

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
        interval: float = 0.2,
    ) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until ``predicate(result)`` is true; return that result.

        Default predicate: a non-empty result. Raises ``AssertionError`` on timeout, showing
        the last result and the server log tail.
        """
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        error = ""
        while True:
            try:
                result = self.query(promql)
                error = ""
                if predicate(result):
                    return result
            except BackendError as e:
                error = str(e)
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {promql!r} on {self!r}; "
                    f"last result: {result!r} {error}\nlog tail:\n{self.log_tail(20)}"
                )
            time.sleep(interval)


# --------------------------------------------------------------------------- Prometheus

Targets = Sequence[str] | Mapping[str, Sequence[str]]


class PrometheusServer(_PromQueryAPI):
    """A real Prometheus server scraping the given targets, with optional rule files.

    ``scrape_targets`` is a list of ``host:port`` (job ``"test"``) or a mapping
    ``job -> [targets]``. A target may also be a full URL
    (``http://127.0.0.1:8000/custom/metrics``) to set scheme and metrics path.
    Started with ``--web.enable-lifecycle`` (for :meth:`reload`), the admin API and the
    remote-write receiver. ``alertmanagers`` (``host:port`` each) receive the firing and
    resolved alerts.
    """

    binary = "prometheus"

    def __init__(
        self,
        scrape_targets: Targets | None = None,
        rule_files: Sequence[str | os.PathLike[str]] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        honor_labels: bool = False,
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        alertmanagers: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args, ready_timeout=ready_timeout)
        self.scrape_targets: Targets = scrape_targets or []
        self.alertmanagers = list(alertmanagers)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.honor_labels = honor_labels
        self.extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self.config_path = self.workdir / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml content built from the current attributes."""
        jobs: Mapping[str, Sequence[str]]
        if isinstance(self.scrape_targets, Mapping):
            jobs = self.scrape_targets
        else:
            jobs = {"test": list(self.scrape_targets)} if self.scrape_targets else {}
        scrape_configs: list[dict[str, Any]] = []
        for job, targets in jobs.items():
            scrape_configs.append(
                {
                    "job_name": job,
                    "honor_labels": self.honor_labels,
                    "static_configs": [_static_config(t) for t in targets],
                }
            )
        scrape_configs.extend(self.extra_scrape_configs)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape_configs,
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(self.alertmanagers)}]}]
            }
        return config

    def write_config(self) -> Path:
        """(Re)write prometheus.yml from the current attributes."""
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return self.config_path

    def _prepare(self) -> None:
        self.write_config()
        promtool("check", "config", "--syntax-only", self.config_path, check=True)

    def _args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--web.enable-remote-write-receiver",
            # hidden flag: apply scrape-target changes after 100ms instead of 5s
            "--scrape.discovery-reload-interval=100ms",
            "--log.level=info",
        ]

    def reload(
        self,
        scrape_targets: Targets | None = None,
        rule_files: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        """Rewrite the config (optionally with new targets/rules) and POST ``/-/reload``."""
        if scrape_targets is not None:
            self.scrape_targets = scrape_targets
        if rule_files is not None:
            self.rule_files = [Path(p).resolve() for p in rule_files]
        self.write_config()
        status, body = http_request("POST", self.url + "/-/reload")
        if status != 200:
            raise BackendError(
                f"reload failed ({status}): {body.decode(errors='replace')}\n{self.log_tail(20)}"
            )

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending/firing) alerts from ``/api/v1/alerts``."""
        return list(self.api("alerts")["alerts"])

    def rules(self, type: str | None = None) -> list[dict[str, Any]]:
        """Rule groups from ``/api/v1/rules`` (``type`` = ``"alert"`` or ``"record"``)."""
        return list(self.api("rules", {"type": type})["groups"])

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """Scrape targets from ``/api/v1/targets`` (``state`` = active/dropped/any)."""
        data = self.api("targets", {"state": state})
        if state == "any":
            return list(data.get("activeTargets", [])) + list(data.get("droppedTargets", []))
        key = "activeTargets" if state == "active" else "droppedTargets"
        return list(data.get(key, []))

    def wait_for_targets_up(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until every active target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t.get("health") == "up" for t in targets):
                return targets
            time.sleep(0.2)
        raise AssertionError(f"targets not all up after {timeout}s: {targets}\n{self.log_tail(20)}")

    def wait_for_rule_evaluation(self, timeout: float = 15.0) -> None:
        """Wait until every rule group has been evaluated at least once since start/reload."""
        deadline = time.monotonic() + timeout
        groups: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            groups = self.rules()
            if all(not g.get("lastEvaluation", "").startswith("0001-") for g in groups) and all(
                r.get("health") != "err" for g in groups for r in g.get("rules", [])
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"rules not evaluated after {timeout}s: {groups}")


def _static_config(target: str) -> dict[str, Any]:
    if "://" not in target:
        return {"targets": [target]}
    parts = urllib.parse.urlsplit(target)
    labels = {"__scheme__": parts.scheme, "__metrics_path__": parts.path or "/metrics"}
    if parts.query:
        for key, values in urllib.parse.parse_qs(parts.query).items():
            labels[f"__param_{key}"] = values[0]
    return {"targets": [parts.netloc], "labels": labels}


# --------------------------------------------------------------------------- Pushgateway


class PushgatewayServer(_Server):
    """A real Prometheus Pushgateway (no persistence file, admin API enabled)."""

    binary = "pushgateway"

    def _args(self) -> list[str]:
        return [
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--persistence.file=",
            "--web.enable-admin-api",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]

    @property
    def target(self) -> str:
        """``host:port`` to put in a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    def metrics_text(self) -> str:
        """The Pushgateway's own ``/metrics`` exposition (includes pushed groups)."""
        return self.get("/metrics").decode()

    def group_path(self, job: str, grouping: Mapping[str, str] | None = None) -> str:
        path = "/metrics/job/" + urllib.parse.quote(job, safe="")
        for key, value in (grouping or {}).items():
            path += f"/{urllib.parse.quote(key, safe='')}/{urllib.parse.quote(value, safe='')}"
        return path

    def push(
        self,
        job: str,
        text: str,
        grouping: Mapping[str, str] | None = None,
        method: str = "PUT",
    ) -> None:
        """Push exposition ``text`` to a group (PUT replaces the group, POST merges)."""
        status, body = http_request(
            method,
            self.url + self.group_path(job, grouping),
            data=text if text.endswith("\n") else text + "\n",
            headers={"Content-Type": "text/plain; version=0.0.4"},
        )
        if status not in (200, 202):
            raise BackendError(f"push to {job} failed ({status}): {body!r}")

    def delete(self, job: str, grouping: Mapping[str, str] | None = None) -> None:
        """Delete a group."""
        status, body = http_request("DELETE", self.url + self.group_path(job, grouping))
        if status not in (200, 202):
            raise BackendError(f"delete of {job} failed ({status}): {body!r}")

    def groups(self) -> list[dict[str, Any]]:
        """Pushed groups from ``/api/v1/metrics``."""
        payload = json.loads(self.get("/api/v1/metrics"))
        return list(payload.get("data") or [])

    def wipe(self) -> None:
        """Delete all groups (admin API)."""
        status, body = http_request("PUT", self.url + "/api/v1/admin/wipe")
        if status not in (200, 202):
            raise BackendError(f"wipe failed ({status}): {body!r}")


# --------------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetricsServer(_PromQueryAPI):
    """A real single-node VictoriaMetrics.

    Accepts OTLP/HTTP protobuf at :attr:`otlp_url` with ``-opentelemetry.usePrometheusNaming``
    (Prometheus-style names: ``smoke.requests`` counter -> ``smoke_requests_total``), and
    Prometheus text at :attr:`import_url`. Queries flush in-memory data first
    (``/internal/force_flush``) and run with ``-search.latencyOffset=0s`` /
    ``-search.disableCache``; still, a sample becomes visible to instant queries only about
    a second after ingestion (query times are whole seconds), so poll with :meth:`wait_for`.
    OTLP resource attributes become labels (``service_name``, ``service_instance_id``,
    ``telemetry_sdk_*``); no ``job``/``instance`` labels are added.
    """

    binary = "victoria-metrics"
    ready_path = "/health"

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        prometheus_naming: bool = True,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args, ready_timeout=ready_timeout)
        self.prometheus_naming = prometheus_naming

    def _args(self) -> list[str]:
        args = [
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=1d",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-selfScrapeInterval=0",
            "-loggerLevel=INFO",
        ]
        if self.prometheus_naming:
            args.append("-opentelemetry.usePrometheusNaming")
        return args

    @property
    def otlp_url(self) -> str:
        """OTLP/HTTP metrics endpoint (protobuf), for ``OTLPMetricExporter(endpoint=...)``."""
        return f"{self.url}/opentelemetry/v1/metrics"

    @property
    def remote_write_url(self) -> str:
        """Prometheus remote-write endpoint (for vmagent and vmalert)."""
        return f"{self.url}/api/v1/write"

    @property
    def import_url(self) -> str:
        """Endpoint accepting Prometheus exposition text."""
        return f"{self.url}/api/v1/import/prometheus"

    def flush(self) -> None:
        """Make recently ingested samples searchable now."""
        status, body = http_request("GET", self.url + "/internal/force_flush")
        if status != 200:
            raise BackendError(f"force_flush failed ({status}): {body!r}")

    def _before_query(self) -> None:
        self.flush()

    @contextlib.contextmanager
    def flushing(self, interval: float = 0.25) -> Iterator[None]:
        """Make ingested samples searchable every ``interval`` seconds while in the block.

        VictoriaMetrics makes what it ingests searchable in batches, a few seconds apart
        (up to about 5 s here); clients that query without flushing first, like vmalert,
        see windows cut short by that much. In production ``-search.latencyOffset`` and
        vmalert's ``-rule.evalDelay`` (30 s each) hide it behind windows of minutes; the
        end-to-end tests compress an hour into seconds, so they flush instead.
        """
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(OSError, urllib.error.URLError, BackendError):
                    self.flush()

        thread = threading.Thread(target=loop, name="vm-flush", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    def import_prometheus(self, text: str) -> None:
        """Ingest Prometheus exposition text."""
        status, body = http_request("POST", self.import_url, data=text)
        if status not in (200, 204):
            raise BackendError(f"import failed ({status}): {body!r}")

    def export(
        self,
        match: str = '{__name__!=""}',
        start: float | str | None = None,
        end: float | str | None = None,
    ) -> list[dict[str, Any]]:
        """Raw stored series and samples (``/api/v1/export``, one dict per series).

        ``end`` defaults to one minute ahead, so samples stamped "now" are included.
        """
        self.flush()
        end = time.time() + 60 if end is None else end
        params = {"match[]": match, "start": start, "end": end}
        raw = self.get("/api/v1/export", _clean_params(params)).decode()
        return [json.loads(line) for line in raw.splitlines() if line.strip()]


# --------------------------------------------------------------------------- vmagent, vmalert


def _scrape_config(jobs: Mapping[str, Sequence[str]], interval: str) -> dict[str, Any]:
    """A Prometheus-format scrape config (vmagent reads the same format)."""
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [_static_config(t) for t in targets]}
            for job, targets in jobs.items()
        ],
    }


class VMAgentServer(_Server):
    """A real vmagent scraping ``scrape_targets`` (``job -> [host:port]``) and remote-writing
    what it scrapes into ``remote_write_url`` (e.g. VictoriaMetrics' ``/api/v1/write``).

    Like Prometheus it adds ``job``, ``instance`` and ``up`` to every target, and writes
    staleness markers when a target stops answering.
    """

    binary = "vmagent"
    ready_path = "/health"

    def __init__(
        self,
        scrape_targets: Mapping[str, Sequence[str]],
        remote_write_url: str,
        scrape_interval: str = "1s",
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args, ready_timeout=ready_timeout)
        self.scrape_targets = scrape_targets
        self.remote_write_url = remote_write_url
        self.scrape_interval = scrape_interval
        self.config_path = self.workdir / "scrape.yml"

    def _prepare(self) -> None:
        config = _scrape_config(self.scrape_targets, self.scrape_interval)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _args(self) -> list[str]:
        return [
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-promscrape.config={self.config_path}",
            "-promscrape.config.strictParse",
            f"-remoteWrite.url={self.remote_write_url}",
            f"-remoteWrite.tmpDataPath={self.workdir / 'remote-write'}",
            "-remoteWrite.flushInterval=200ms",
            "-loggerLevel=INFO",
        ]

    def targets_up(self) -> dict[str, bool]:
        """``job/instance -> up`` for every scrape target, from ``/api/v1/targets``."""
        data = json.loads(self.get("/api/v1/targets"))["data"]["activeTargets"]
        return {
            f"{t['labels']['job']}/{t['labels']['instance']}": t["health"] == "up" for t in data
        }


class VMAlertServer(_Server):
    """A real vmalert evaluating rule files against ``datasource_url`` and writing recording
    results and the ``ALERTS`` series back through ``remote_write_url`` (a base URL: vmalert
    appends ``/api/v1/write``; for VictoriaMetrics, its root URL).

    Notifications go nowhere (``-notifier.blackhole``); read alerts from :meth:`alerts`.

    ``eval_delay`` (``-rule.evalDelay``): vmalert evaluates, and stamps its results, that far
    in the past, so that the last samples have arrived and are searchable. It should equal
    the data source's ``-search.latencyOffset`` (both 30 s by default); here 1 s, with a
    VictoriaMetrics that runs with ``-search.latencyOffset=0s`` and is flushed often (see
    :meth:`VictoriaMetricsServer.flushing`).
    """

    binary = "vmalert"
    ready_path = "/health"

    def __init__(
        self,
        rule_files: Sequence[str | os.PathLike[str]],
        datasource_url: str,
        remote_write_url: str,
        evaluation_interval: str = "1s",
        eval_delay: str = "1s",
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args, ready_timeout=ready_timeout)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.datasource_url = datasource_url
        self.remote_write_url = remote_write_url
        self.evaluation_interval = evaluation_interval
        self.eval_delay = eval_delay

    def _args(self) -> list[str]:
        return [
            f"-httpListenAddr=127.0.0.1:{self.port}",
            *(f"-rule={p}" for p in self.rule_files),
            f"-datasource.url={self.datasource_url}",
            f"-remoteWrite.url={self.remote_write_url}",
            "-remoteWrite.flushInterval=200ms",
            "-notifier.blackhole",
            f"-evaluationInterval={self.evaluation_interval}",
            f"-rule.evalDelay={self.eval_delay}",
            "-loggerLevel=INFO",
        ]

    def _api(self, path: str) -> Any:
        payload = json.loads(self.get(f"/api/v1/{path}"))
        if payload.get("status") != "success":
            raise BackendError(f"vmalert /api/v1/{path}: {payload}")
        return payload["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending/firing) alerts from ``/api/v1/alerts``."""
        return list(self._api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Rule groups with their rules' health from ``/api/v1/rules``."""
        return list(self._api("rules")["groups"])

    def wait_for_rule_evaluation(self, timeout: float = 15.0) -> None:
        """Wait until every group has been evaluated at least once, without errors."""
        deadline = time.monotonic() + timeout
        groups: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            groups = self.rules()
            rules = [r for g in groups for r in g.get("rules", [])]
            if (
                groups
                and all(not r.get("lastEvaluation", "").startswith("0001-") for r in rules)
                and all(r.get("health") != "err" for r in rules)
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"vmalert rules not evaluated after {timeout}s: {groups}")


# --------------------------------------------------------------------------- Alertmanager


ALERTMANAGER_TEMPLATES_LINK = "alertmanager-templates"
"""Where the installed Alertmanager looks for its notification templates, relative to its
working directory (``scripts/install-backends`` relocates Debian's compiled-in
``/usr/share/prometheus/alertmanager`` there)."""


class AlertmanagerServer(_Server):
    """A real Alertmanager (Debian's ``prometheus-alertmanager``) with ``config`` (a mapping,
    or YAML text as shipped), checked by ``amtool check-config`` before it starts.

    Clustering is off (no gossip port: every test gets its own instance); notification state
    and silences live in the working directory, and so does the link to the package's
    notification templates that ``scripts/install-backends`` points the binary at
    (:data:`ALERTMANAGER_TEMPLATES_LINK`). :attr:`target` goes into Prometheus' ``alerting``
    section; :meth:`alerts` reads what it holds, with its inhibition state.
    """

    binary = "alertmanager"

    def __init__(
        self,
        config: Mapping[str, Any] | str,
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args, ready_timeout=ready_timeout)
        self.config = config
        self.config_path = self.workdir / "alertmanager.yml"

    def _prepare(self) -> None:
        templates = (
            Path(bin_path(self.binary)).resolve().parents[1] / "share/prometheus/alertmanager"
        )
        link = self.workdir / ALERTMANAGER_TEMPLATES_LINK
        if not link.is_symlink():
            link.symlink_to(templates, target_is_directory=True)
        text = self.config if isinstance(self.config, str) else yaml.safe_dump(dict(self.config))
        self.config_path.write_text(text)
        amtool("check-config", self.config_path, check=True)

    def _args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]

    @property
    def target(self) -> str:
        """``host:port`` for Prometheus' ``alerting.alertmanagers`` static config."""
        return f"127.0.0.1:{self.port}"

    def api(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``/api/v2/<path>`` and return the decoded JSON."""
        return json.loads(self.get(f"/api/v2/{path.lstrip('/')}", params))

    def alerts(self, **filters: Any) -> list[dict[str, Any]]:
        """Alerts it holds (``/api/v2/alerts``), each with ``status.state`` (``active``,
        ``suppressed``) and ``status.inhibitedBy``; ``filters`` are the API's query
        parameters (``active``, ``inhibited``, ``silenced``, ``receiver``...)."""
        return list(self.api("alerts", filters))

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send alerts as Prometheus would (``labels``, ``annotations``, ``startsAt``,
        ``endsAt``)."""
        status, body = http_request(
            "POST",
            self.url + "/api/v2/alerts",
            data=json.dumps(list(alerts)),
            headers={"Content-Type": "application/json"},
        )
        if status != 200:
            raise BackendError(f"POST /api/v2/alerts -> {status}: {body[:2000]!r}")


class WebhookReceiver:
    """In-process HTTP server that records every JSON body POSTed to it, with the path it
    was posted to: an Alertmanager webhook receiver (one path per receiver)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"undecodable": raw.decode(errors="replace")}
                with owner._lock:
                    owner._received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        """The URL to post to, e.g. ``url("/page")`` for one receiver."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def received(self) -> list[tuple[str, Any]]:
        """``(path, JSON body)`` of every POST so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    def wait_for(
        self,
        predicate: Callable[[list[tuple[str, Any]]], bool],
        timeout: float = 30.0,
        what: str = "",
    ) -> list[tuple[str, Any]]:
        """Poll until ``predicate(received)`` holds; return what was received by then."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.received
            if predicate(received):
                return received
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"webhook: timed out after {timeout}s waiting for {what or predicate}; "
                    f"received {json.dumps(received, indent=1)[:6000]}"
                )
            time.sleep(0.1)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- exposition


class ExpositionServer:
    """In-process HTTP server serving mutable Prometheus text at ``/metrics``.

    Set :attr:`text` to change what the next scrape sees; :attr:`scrapes` counts requests.
    """

    def __init__(self, text: str = "", content_type: str = "text/plain; version=0.0.4") -> None:
        self.text = text
        self.content_type = content_type
        self.scrapes = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                owner.scrapes += 1
                body = owner.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def target(self) -> str:
        """``host:port`` for a scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> ExpositionServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ExpositionServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def backend_bins() -> dict[str, Path]:
    """Install (once) and return ``{name: path}`` of all backend binaries."""
    return ensure_backends()


ServerT = TypeVar("ServerT", bound=_Server)


def _started_servers(
    cls: type[ServerT], workdir_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServerT]]:
    """Yield a factory ``(**cls kwargs) -> started server``; stop every server it made after."""
    started: list[ServerT] = []

    def make(*args: Any, **kwargs: Any) -> ServerT:
        kwargs.setdefault("workdir", tmp_path_factory.mktemp(workdir_prefix))
        server = cls(*args, **kwargs)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def prometheus_factory(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory ``(**PrometheusServer kwargs) -> started PrometheusServer``; stops all after."""
    yield from _started_servers(PrometheusServer, "prometheus", tmp_path_factory)


@pytest.fixture
def prometheus(prometheus_factory: Callable[..., PrometheusServer]) -> PrometheusServer:
    """A started Prometheus with no targets (use ``reload(scrape_targets=...)``)."""
    return prometheus_factory()


@pytest.fixture
def pushgateway(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PushgatewayServer]:
    """A started, empty Pushgateway."""
    server = PushgatewayServer(workdir=tmp_path_factory.mktemp("pushgateway"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def victoria_metrics_factory(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., VictoriaMetricsServer]]:
    """Factory ``(**VictoriaMetricsServer kwargs) -> started server``; stops all after."""
    yield from _started_servers(VictoriaMetricsServer, "victoria-metrics", tmp_path_factory)


@pytest.fixture
def victoria_metrics(
    victoria_metrics_factory: Callable[..., VictoriaMetricsServer],
) -> VictoriaMetricsServer:
    """A started, empty VictoriaMetrics with Prometheus naming for OTLP."""
    return victoria_metrics_factory()


@pytest.fixture
def exposition_server() -> Iterator[ExpositionServer]:
    """An in-process ``/metrics`` server; set ``.text`` to what scrapes should see."""
    with ExpositionServer() as server:
        yield server


@pytest.fixture
def vmagent_factory(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., VMAgentServer]]:
    """Factory ``(**VMAgentServer kwargs) -> started vmagent``; stops all after."""
    yield from _started_servers(VMAgentServer, "vmagent", tmp_path_factory)


@pytest.fixture
def vmalert_factory(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., VMAlertServer]]:
    """Factory ``(**VMAlertServer kwargs) -> started vmalert``; stops all after."""
    yield from _started_servers(VMAlertServer, "vmalert", tmp_path_factory)


@pytest.fixture
def alertmanager_factory(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., AlertmanagerServer]]:
    """Factory ``(config, **AlertmanagerServer kwargs) -> started Alertmanager``; stops all
    after."""
    yield from _started_servers(AlertmanagerServer, "alertmanager", tmp_path_factory)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A started in-process webhook receiver recording what is posted to it."""
    with WebhookReceiver() as receiver:
        yield receiver


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A real ``redis-server`` (Debian's package, installed by ``scripts/install-system-packages``)
    on 127.0.0.1:<free port>, without persistence, in its own directory."""

    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        self.workdir = Path(workdir)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(exe, os.X_OK):
            raise BackendError(
                "redis-server is missing: run scripts/install-system-packages (as root)"
            )
        for _attempt in range(3):
            self.port = free_port()
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(64).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise BackendError(f"redis-server did not start; log:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis for the whole session (tests use their own database numbers)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
