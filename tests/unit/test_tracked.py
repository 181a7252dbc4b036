"""@tracked on every kind of callable, tenant resolution, and class-based jobs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest

from otel_jobtrack import current_run, track_run, tracked
from tests.helpers import value


@dataclass
class Tenant:
    slug: str


def test_plain_function_keeps_signature_and_wrapped() -> None:
    def sync_all(batch_size: int, *, dry_run: bool = False) -> int:
        """Docstring survives."""
        current_run().add_resources(batch_size)
        return batch_size * 2

    wrapped = tracked(kind="cron")(sync_all)
    assert wrapped(3) == 6
    assert wrapped.__wrapped__ is sync_all
    assert inspect.signature(wrapped) == inspect.signature(sync_all)
    assert wrapped.__doc__ == "Docstring survives."
    assert wrapped.__name__ == "sync_all"
    name = f"{__name__}.test_plain_function_keeps_signature_and_wrapped.<locals>.sync_all"
    assert value("jobtrack_runs_total", job_name=name, kind="cron", tenant="system") == 1
    assert value("jobtrack_resources_total", job_name=name) == 3


def test_explicit_name_and_fixed_tenant() -> None:
    @tracked("reports.rollup", kind="batch", tenant="acme")
    def rollup() -> None:
        pass

    rollup()
    assert value("jobtrack_runs_total", job_name="reports.rollup", tenant="acme") == 1


def test_methods_classmethods_staticmethods() -> None:
    class Jobs:
        @tracked("m.method", kind="resource", tenant_arg="tenant")
        def method(self, tenant: str) -> str:
            return f"{type(self).__name__}:{tenant}"

        @tracked("m.classmethod", kind="resource", tenant_arg="tenant")
        @classmethod
        def cls_method(cls, tenant: str) -> str:
            return f"{cls.__name__}:{tenant}"

        @tracked("m.staticmethod", kind="resource", tenant_arg="tenant")
        @staticmethod
        def static(tenant: str) -> str:
            return tenant

    jobs = Jobs()
    assert jobs.method("a") == "Jobs:a"
    assert Jobs.method(jobs, "b") == "Jobs:b"
    assert Jobs.cls_method("c") == "Jobs:c"
    assert jobs.cls_method(tenant="d") == "Jobs:d"
    assert Jobs.static("e") == "e"
    assert jobs.static("f") == "f"
    for job, tenant in [
        ("m.method", "a"),
        ("m.method", "b"),
        ("m.classmethod", "c"),
        ("m.classmethod", "d"),
        ("m.staticmethod", "e"),
        ("m.staticmethod", "f"),
    ]:
        assert value("jobtrack_runs_total", job_name=job, tenant=tenant) == 1, (job, tenant)


def test_tenant_from_attribute_path_and_default() -> None:
    @tracked("by.slug", kind="schedule", tenant_arg="tenant.slug")
    def schedule(tenant: Tenant, limit: int = 10) -> None:
        current_run().add_resources(limit)

    @tracked("by.default", kind="schedule", tenant_arg="tenant")
    def schedule_default(tenant: str | None = None) -> None:
        pass

    schedule(Tenant("globex"))
    schedule(limit=2, tenant=Tenant("hooli"))
    schedule_default()
    assert value("jobtrack_resources_total", job_name="by.slug", tenant="globex") == 10
    assert value("jobtrack_resources_total", job_name="by.slug", tenant="hooli") == 2
    assert value("jobtrack_runs_total", job_name="by.default", tenant="system") == 1


async def test_async_function() -> None:
    @tracked("async.job", kind="resource", tenant_arg="tenant")
    async def work(tenant: str) -> str:
        current_run().add_resources()
        return tenant.upper()

    assert inspect.iscoroutinefunction(work)
    assert await work("acme") == "ACME"
    assert await work(tenant="globex") == "GLOBEX"
    assert value("jobtrack_runs_total", job_name="async.job", tenant="acme") == 1


async def test_async_failure_and_method() -> None:
    class Worker:
        @tracked("async.method", kind="resource")
        async def run(self) -> None:
            raise LookupError("missing")

    with pytest.raises(LookupError):
        await Worker().run()
    assert value("jobtrack_runs_total", job_name="async.method", state="failure") == 1


def test_definition_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown job kind"):
        tracked(kind="hourly")
    with pytest.raises(ValueError, match="unknown job kind"):
        tracked(kind="nope")(lambda: None)
    with pytest.raises(ValueError, match="no parameter 'tenant'"):
        tracked(kind="resource", tenant_arg="tenant")(lambda account: None)
    with pytest.raises(ValueError, match="either tenant= or tenant_arg="):
        tracked(kind="resource", tenant="a", tenant_arg="b")
    with pytest.raises(ValueError, match="empty"):
        tracked(" ", kind="resource")(lambda: None)
    with pytest.raises(ValueError, match="not both"):
        tracked(kind="cron", every=60, cron="* * * * *")(lambda: None)


# -- class-based jobs: the cron/schedule base-class pattern ------------------------------


class ApplicationScheduleJob:
    """Base class: tracks every run; subclasses only define ``schedule``."""

    limited_exceptions: tuple[type[BaseException], ...] = ()

    def perform(self, tenant_slug: str | None) -> None:
        name = type(self).__module__ + "." + type(self).__qualname__
        with track_run(
            name,
            kind="schedule",
            tenant=tenant_slug,
            limited_exceptions=self.limited_exceptions,
            suppress_limited=True,
        ):
            self.schedule(tenant_slug)

    def schedule(self, tenant_slug: str | None) -> None:
        raise NotImplementedError


class Locked(Exception):
    pass


class ScheduleInvoices(ApplicationScheduleJob):
    limited_exceptions = (Locked,)

    def schedule(self, tenant_slug: str | None) -> None:
        if tenant_slug == "busy":
            raise Locked()
        for batch in ([1, 2, 3], [4, 5]):
            current_run().add_resources(len(batch))


class Cleanup(ApplicationScheduleJob):
    def schedule(self, tenant_slug: str | None) -> None:
        raise RuntimeError("db down")


def test_class_based_jobs() -> None:
    ScheduleInvoices().perform("acme")
    ScheduleInvoices().perform("busy")  # limited, suppressed by the base class
    with pytest.raises(RuntimeError):
        Cleanup().perform(None)
    invoices = f"{__name__}.ScheduleInvoices"
    assert value("jobtrack_resources_total", job_name=invoices, tenant="acme") == 5
    assert value("jobtrack_runs_total", job_name=invoices, tenant="busy", state="limited") == 1
    cleanup = f"{__name__}.Cleanup"
    assert value("jobtrack_runs_total", job_name=cleanup, tenant="system", state="failure") == 1
