"""Bounded series for unbounded tenants and job names, and tenants kept out of the backend."""

from __future__ import annotations

import gc
import hashlib
import hmac
import os
from collections.abc import Iterator

import pytest

from otel_jobtrack import set_cardinality_limits, set_tenant_privacy, track_run
from otel_jobtrack._core.settings import apply_environment
from otel_jobtrack._core.store import DEFAULT_MAX_JOB_NAMES, DEFAULT_MAX_TENANTS_PER_JOB, STORE
from tests.helpers import samples, value


@pytest.fixture(autouse=True)
def default_settings() -> Iterator[None]:
    yield
    set_cardinality_limits(
        max_tenants_per_job=DEFAULT_MAX_TENANTS_PER_JOB, max_job_names=DEFAULT_MAX_JOB_NAMES
    )
    set_tenant_privacy()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_one_hundred_thousand_tenants_stay_bounded_and_exact() -> None:
    set_cardinality_limits(max_tenants_per_job=500)
    for warmup in range(500):
        with track_run("fanout", kind="schedule", tenant=f"warm-{warmup}") as run:
            run.add_resources(1)
    gc.collect()
    before = _rss_bytes()
    for n in range(100_000):
        with track_run("fanout", kind="schedule", tenant=f"tenant-{n}") as run:
            run.add_resources(2)
    gc.collect()
    grown = _rss_bytes() - before
    # 100,000 tenants past the limit add one series, not 100,000 (each series costs about
    # 2.5 KB, so unbounded growth would be ~250 MB); the tenant-label cache is capped too.
    assert grown < 40_000_000, f"resident memory grew by {grown} bytes"
    assert len(STORE.series) == 501
    tenants = {
        dict(labels)["tenant"] for (name, labels) in samples() if name == "jobtrack_runs_total"
    }
    assert len(tenants) == 501
    assert value("jobtrack_runs_total", job_name="fanout", tenant="__overflow__") == 100_000
    assert value("jobtrack_resources_total", job_name="fanout", tenant="__overflow__") == 200_000
    total = sum(
        v
        for (name, labels), v in samples().items()
        if name == "jobtrack_runs_total" and dict(labels)["job_name"] == "fanout"
    )
    assert total == 100_500
    assert value("jobtrack_overflow_runs_total", job_name="fanout", limit="tenant") == 100_000


def test_job_name_limit() -> None:
    set_cardinality_limits(max_job_names=3)
    for n in range(10):
        with track_run(f"dynamic-{n}", kind="resource", tenant="acme"):
            pass
    names = {
        dict(labels)["job_name"] for (name, labels) in samples() if name == "jobtrack_runs_total"
    }
    assert names == {"dynamic-0", "dynamic-1", "dynamic-2", "__overflow__"}
    assert value("jobtrack_runs_total", job_name="__overflow__") == 7
    assert value("jobtrack_overflow_runs_total", job_name="__overflow__", limit="job_name") == 7


def test_overflow_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    set_cardinality_limits(max_tenants_per_job=1)
    for n in range(5):
        with track_run("one-tenant", kind="schedule", tenant=str(n)):
            pass
    assert sum("more than 1 tenants" in r.getMessage() for r in caplog.records) == 1


def test_keyed_hash_hides_tenants_stably() -> None:
    key = "0123456789abcdef-secret"
    set_tenant_privacy(hash_key=key)
    for _ in range(2):
        with track_run("private", kind="schedule", tenant="acme-corp"):
            pass
    with track_run("private", kind="schedule", tenant=None):
        pass
    expected = hmac.new(key.encode(), b"acme-corp", hashlib.sha256).hexdigest()[:16]
    assert value("jobtrack_runs_total", job_name="private", tenant=expected) == 2
    assert value("jobtrack_runs_total", job_name="private", tenant="system") == 1
    assert "acme-corp" not in str(samples())


def test_custom_mapper_and_a_failing_mapper() -> None:
    set_tenant_privacy(mapper=lambda t: f"customer-{len(t)}")
    with track_run("mapped", kind="schedule", tenant="globex"):
        pass
    assert value("jobtrack_runs_total", job_name="mapped", tenant="customer-6") == 1

    def broken(tenant: str) -> str:
        raise KeyError(tenant)

    set_tenant_privacy(mapper=broken)
    with track_run("mapped", kind="schedule", tenant="globex") as run:
        pass
    assert run.tenant == "unknown"
    assert value("jobtrack_instrumentation_errors_total", where="tenant mapper") == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tenants_per_job": 0},
        {"max_job_names": -1},
        {"max_tenants_per_job": 1.5},
        {"max_job_names": True},
    ],
)
def test_bad_limits_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        set_cardinality_limits(**kwargs)  # type: ignore[arg-type]


def test_bad_privacy_options_raise() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        set_tenant_privacy(hash_key="short")
    with pytest.raises(ValueError, match="not both"):
        set_tenant_privacy(hash_key="0123456789abcdef", mapper=str)
    with pytest.raises(ValueError, match="callable"):
        set_tenant_privacy(mapper="nope")  # type: ignore[arg-type]


def test_environment_settings(caplog: pytest.LogCaptureFixture) -> None:
    apply_environment(
        {"OTEL_JOBTRACK_MAX_TENANTS_PER_JOB": "7", "OTEL_JOBTRACK_MAX_JOB_NAMES": "lots"}
    )
    assert STORE.max_tenants_per_job == 7
    assert STORE.max_job_names == DEFAULT_MAX_JOB_NAMES
    assert "OTEL_JOBTRACK_MAX_JOB_NAMES" in caplog.text
