"""OTLP into a real VictoriaMetrics gives the same series as a real Prometheus scraping /metrics.

Also: a short-lived script (one run, then exit) delivers its run over OTLP before it exits,
over http/protobuf and gRPC, and a forked child does not re-export its parent's runs.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from otel_jobtrack import configure, start_metrics_server
from otel_jobtrack._core import contract
from otel_jobtrack.exporters import pipeline as config
from tests.backends import (
    REPO_ROOT,
    PrometheusServer,
    VictoriaMetricsServer,
    free_port,
    http_request,
)
from tests.unit.test_otlp import workload

pytestmark = pytest.mark.backend

CONTRACT_LABELS = ("kind", "job_name", "tenant", "state", "le", "where", "exporter")
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def reset_config() -> Iterator[None]:
    config.reset_for_tests()
    yield
    config.reset_for_tests()


def contract_series(result: list[dict[str, Any]]) -> Series:
    """Query result -> {(name, contract labels): value}; ``le`` compared as a number.

    The backends spell whole-number bounds differently (``1.0`` scraped, ``1`` from OTLP);
    target and resource labels (``job``, ``instance``, ``service_name``...) are not compared.
    """
    out: Series = {}
    for item in result:
        metric = item["metric"]
        labels = {k: v for k, v in metric.items() if k in CONTRACT_LABELS}
        if "le" in labels:
            labels["le"] = repr(float(labels["le"]))
        key = (metric["__name__"], frozenset(labels.items()))
        assert key not in out, f"two series for {key}"
        out[key] = float(item["value"][1])
    return out


def test_otlp_and_scrape_give_the_same_series(
    victoria_metrics: VictoriaMetricsServer,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    port = free_port()
    server, _ = start_metrics_server(port=port, addr="127.0.0.1")
    try:
        prometheus = prometheus_factory(scrape_targets=[f"127.0.0.1:{port}"])
        exporters = configure(
            "otlp",
            endpoint=victoria_metrics.otlp_url,
            export_interval=3600,
            service_name="parity",
        )
        held = workload()
        try:
            assert exporters.flush(timeout=10)
            selector = '{__name__=~"jobtrack_.+"}'
            total_runs = f"sum({contract.RUNS_TOTAL})"
            expected_runs = 7.0
            victoria_metrics.wait_for(
                total_runs, lambda r: bool(r) and float(r[0]["value"][1]) == expected_runs
            )
            # Any scrape after the workload finished shows the final numbers.
            prometheus.wait_for(
                total_runs, lambda r: bool(r) and float(r[0]["value"][1]) == expected_runs
            )
            prometheus.wait_for(f"{contract.OLDEST_RUN_START}")
            over_otlp = contract_series(victoria_metrics.query(selector))
            scraped = contract_series(prometheus.query(selector))
        finally:
            held.finish()
            exporters.shutdown(timeout=5)  # while VictoriaMetrics still runs
    finally:
        server.shutdown()
        server.server_close()

    assert set(over_otlp) == set(scraped)
    for key, value in scraped.items():
        name = key[0]
        if name.endswith("_sum") or "timestamp" in name:
            # Sums and unix times are floats; the backends store them with full precision
            # but the two paths round-trip them through different encodings.
            assert over_otlp[key] == pytest.approx(value, rel=1e-9, abs=1e-6), key
        else:
            assert over_otlp[key] == value, key
    names = {name for name, _ in scraped}
    assert names >= {
        contract.RUNS_TOTAL,
        contract.RESOURCES_TOTAL,
        contract.LAST_RUN_TIMESTAMP,
        contract.RUNS_IN_PROGRESS,
        contract.OLDEST_RUN_START,
        contract.EXPECTED_INTERVAL,
        contract.GRACE,
        contract.MAX_RUNTIME,
        contract.RUN_DURATION + "_bucket",
        contract.RUN_DURATION + "_sum",
        contract.RUN_DURATION + "_count",
    }
    bounds = {
        float(dict(labels)["le"])
        for name, labels in over_otlp
        if name == contract.RUN_DURATION + "_bucket"
    }
    assert bounds == {*contract.DURATION_BUCKETS, math.inf}
    label_sets = {
        frozenset(k for k, _ in labels) for name, labels in over_otlp if name == contract.RUNS_TOTAL
    }
    assert label_sets == {frozenset({"kind", "job_name", "tenant", "state"})}


SCRIPT = """
    import otel_jobtrack
    {setup}
    with otel_jobtrack.track_run("nightly.backup", kind="cron", every=86400) as run:
        run.add_resources(3)
    print("backup done")
"""


def run_script(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_backup_run(vm: VictoriaMetricsServer, service: str) -> None:
    selector = f'{{job_name="nightly.backup",service_name="{service}"}}'
    (runs,) = vm.wait_for(f"{contract.RUNS_TOTAL}{selector} > 0")
    assert runs["value"][1] == "1"
    assert runs["metric"]["state"] == "success" and runs["metric"]["tenant"] == "system"
    assert vm.query_value(f"{contract.RESOURCES_TOTAL}{selector}") == 3
    assert vm.query_value(f"{contract.RUN_DURATION}_count{selector}") == 1
    assert vm.query_value(f'{contract.EXPECTED_INTERVAL}{{job_name="nightly.backup"}}') == 86400


def test_script_without_code_changes_delivers_its_run_before_exiting(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    """Environment only (no configure() call): configured at the first run, flushed at exit,
    although the export interval is an hour."""
    proc = run_script(
        SCRIPT.format(setup=""),
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=victoria_metrics.otlp_url,
        OTEL_SERVICE_NAME="backup-env",
        OTEL_METRIC_EXPORT_INTERVAL="3600000",
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "backup done\n", "")
    assert_one_backup_run(victoria_metrics, "backup-env")


class OtlpGrpcRelay(metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP/gRPC receiver forwarding each request to an OTLP/HTTP endpoint, as a Collector
    with an otlp receiver and an otlphttp exporter would."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        self.requests = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.requests += 1
        status, body = http_request(
            "POST",
            self.target_url,
            data=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        if not 200 <= status < 300:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"backend said {status}: {body[:200]!r}")
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_script_over_grpc_delivers_its_run_before_exiting(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    relay = OtlpGrpcRelay(victoria_metrics.otlp_url)
    relay.server.start()
    try:
        proc = run_script(
            SCRIPT.format(
                setup=f'otel_jobtrack.configure("otlp", protocol="grpc", '
                f'endpoint="http://127.0.0.1:{relay.port}", service_name="backup-grpc")'
            ),
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "backup done\n", "")
        assert relay.requests == 1
        assert_one_backup_run(victoria_metrics, "backup-grpc")
    finally:
        relay.server.stop(grace=None)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_exports_only_its_own_runs(victoria_metrics: VictoriaMetricsServer) -> None:
    proc = run_script(
        f"""
        import os
        import otel_jobtrack
        from otel_jobtrack.exporters import pipeline as config

        otel_jobtrack.configure(
            "otlp", endpoint="{victoria_metrics.otlp_url}", export_interval=3600,
            service_name="forky",
        )
        with otel_jobtrack.track_run("fork.job", kind="batch"):
            pass
        pid = os.fork()
        if pid == 0:
            for _ in range(2):
                with otel_jobtrack.track_run("fork.job", kind="batch"):
                    pass
            os._exit(0 if config.current().flush(timeout=10) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0\n", "")
    selector = '{job_name="fork.job",service_name="forky"}'
    by_instance = victoria_metrics.wait_for(
        f"{contract.RUN_DURATION}_count{selector}", lambda r: len(r) == 2
    )
    counts = sorted(float(s["value"][1]) for s in by_instance)
    assert counts == [1, 2]  # parent 1, child 2: the child did not re-send the parent's run
    runs = victoria_metrics.query(f"{contract.RUNS_TOTAL}{selector} > 0")
    assert sorted(float(s["value"][1]) for s in runs) == [1, 2]
