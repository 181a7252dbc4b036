"""``track_run``: one tracked run of a job, usable as ``with``/``async with``.

A run counts one invocation, its duration (monotonic clock), the resources it touched and
its final state. Anything that goes wrong inside the instrumentation is logged and counted,
never raised into the job (see :mod:`otel_jobtrack._core.errors`).
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable
from datetime import timedelta
from time import perf_counter as _monotonic
from time import time as _wall_clock
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from otel_jobtrack._core import errors
from otel_jobtrack._core.contract import FAILURE, LIMITED, STATES, SUCCESS
from otel_jobtrack._core.labels import (
    normalize_tenant,
    validate_job_name,
    validate_kind,
    validate_resources,
    validate_seconds,
)
from otel_jobtrack._core.store import STORE, Cadence, Series, Store

_SUCCESS = STATES.index(SUCCESS)
_FAILURE = STATES.index(FAILURE)
_LIMITED = STATES.index(LIMITED)

P = ParamSpec("P")
R = TypeVar("R")

Seconds = float | int | timedelta


class Job:
    """A job definition: name, kind, what counts as "limited", and its expected cadence.

    Definitions are validated when created, so a typo fails where the job is defined rather
    than somewhere in a metrics backend. ``job.run(tenant=...)`` starts one tracked run.
    """

    __slots__ = (
        "__weakref__",
        "_series",
        "_store",
        "cadence",
        "job_name",
        "kind",
        "limited_exceptions",
        "suppress_limited",
    )

    def __init__(
        self,
        job_name: str,
        *,
        kind: str,
        limited_exceptions: tuple[type[BaseException], ...] = (),
        suppress_limited: bool = False,
        every: Seconds | None = None,
        cron: str | None = None,
        grace: Seconds | None = None,
        max_runtime: Seconds | None = None,
        store: Store = STORE,
        register: bool = True,
    ) -> None:
        self.job_name = validate_job_name(job_name)
        self.kind = validate_kind(kind)
        if isinstance(limited_exceptions, type):
            limited_exceptions = (limited_exceptions,)
        for exc_type in limited_exceptions:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise ValueError(f"limited_exceptions must be exception types, got {exc_type!r}")
        self.limited_exceptions = tuple(limited_exceptions)
        self.suppress_limited = bool(suppress_limited)
        self.cadence = _cadence(every, cron, grace, max_runtime)
        self._series: dict[str, Series] = {}
        self._store = store
        if register:
            self.register()

    def register(self) -> None:
        """Publish the declared cadence (if any) and follow store resets."""
        _all_jobs.add(self)
        if self.cadence != Cadence():
            self._store.declare(self.kind, self.job_name, self.cadence)

    def __repr__(self) -> str:
        return f"Job({self.job_name!r}, kind={self.kind!r})"

    def run(self, tenant: object = None) -> Run:
        """A run of this job for ``tenant`` (``None``: a system job); enter it with ``with``."""
        return Run(self, tenant)

    def series_for(self, tenant: str) -> Series:
        series = self._series.get(tenant)
        if series is None:
            series = self._store.get_series(self.kind, self.job_name, tenant)
            if series.overflow is None:  # never cache past a limit: memory stays bounded
                self._series[tenant] = series
        return series

    def _reset(self) -> None:
        self._series = {}


def _cadence(
    every: Seconds | None, cron: str | None, grace: Seconds | None, max_runtime: Seconds | None
) -> Cadence:
    if every is not None and cron is not None:
        raise ValueError("declare either every= or cron=, not both")
    interval = validate_seconds("every", every)
    if cron is not None:
        from otel_jobtrack._core.cadence import cron_max_interval

        interval = cron_max_interval(cron)
    return Cadence(
        expected_interval=interval,
        grace=validate_seconds("grace", grace, allow_zero=True),
        max_runtime=validate_seconds("max_runtime", max_runtime),
    )


_all_jobs: weakref.WeakSet[Job] = weakref.WeakSet()


def _forget_series() -> None:
    for job in list(_all_jobs):
        job._reset()


STORE.on_reset(_forget_series)

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "otel_jobtrack_current_run", default=None
)


class Run:
    """One run of a job. Enter it once with ``with`` or ``async with``."""

    __slots__ = (
        "__weakref__",
        "_ctx_token",
        "_limited",
        "_lock",
        "_series",
        "_start",
        "duration",
        "job",
        "resources",
        "state",
        "tenant",
    )

    def __init__(self, job: Job, tenant: object = None) -> None:
        self.job = job
        self.tenant = normalize_tenant(tenant)
        self.resources: int | float = 0
        self.state: str | None = None
        self.duration: float | None = None
        self._limited = False
        self._series: Series | None = None
        self._start = 0.0
        self._ctx_token: contextvars.Token[Run | None] | None = None
        self._lock: threading.Lock | None = None

    @property
    def job_name(self) -> str:
        return self.job.job_name

    @property
    def kind(self) -> str:
        return self.job.kind

    def __repr__(self) -> str:
        return (
            f"Run({self.job.job_name!r}, kind={self.job.kind!r}, tenant={self.tenant!r}, "
            f"resources={self.resources!r}, state={self.state!r})"
        )

    def add_resources(self, n: int | float = 1) -> None:
        """Count ``n`` resources (tenants scheduled, records synced...) touched by this run.

        Safe to call from several threads of the same run. Negative or non-numeric ``n`` is a
        programming error and raises ``ValueError``, like ``Counter.inc(-1)``.
        """
        if type(n) is not int or n < 0:
            validate_resources(n)
        lock = self._lock
        if lock is None:
            self.resources += n
        else:
            with lock:
                self.resources += n

    def mark_limited(self) -> None:
        """Record this run as refused by a concurrency limit (state ``limited``)."""
        self._limited = True

    def bind(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn`` so ``current_run()`` finds this run in a thread or executor running it.

        Threads do not inherit context variables; ``threading.Thread(target=run.bind(work))``
        or ``executor.submit(run.bind(work))`` makes ``current_run()`` work inside them.
        """
        if self._lock is None:
            self._lock = threading.Lock()
        ctx = contextvars.copy_context()

        def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            return ctx.copy().run(fn, *args, **kwargs)

        return bound

    # -- context manager protocol -------------------------------------------------------

    def __enter__(self) -> Run:
        try:
            job = self.job
            series = job._series.get(self.tenant) or job.series_for(self.tenant)
            job._store.start(series, id(self), _wall_clock())
            self._series = series
        except Exception as exc:
            errors.instrumentation_error("run start", exc)
        self._ctx_token = _current.set(self)
        self._start = _monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        duration = _monotonic() - self._start
        suppress = False
        try:
            if exc_type is None:
                state = _LIMITED if self._limited else _SUCCESS
            elif self.job.limited_exceptions and issubclass(exc_type, self.job.limited_exceptions):
                state = _LIMITED
                suppress = self.job.suppress_limited
            elif exc_type is SystemExit and getattr(exc, "code", 1) in (0, None):
                state = _LIMITED if self._limited else _SUCCESS
            else:
                state = _FAILURE
            self.state = STATES[state]
            self.duration = duration
            ctx_token = self._ctx_token
            if ctx_token is not None:
                self._ctx_token = None
                try:
                    _current.reset(ctx_token)
                except ValueError:  # exited in another context (e.g. a different task)
                    _current.set(None)
            series = self._series
            if series is not None:
                self._series = None
                self.job._store.finish(
                    series, id(self), state, duration, self.resources, _wall_clock()
                )
        except Exception as error:
            errors.instrumentation_error("run finish", error)
        return suppress

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


_jobs: dict[tuple[str, str], Job] = {}
_definitions: dict[tuple[Any, ...], Job] = {}
_plain_definitions: dict[tuple[str, str], Job] = {}  # calls without options: the hot path
_jobs_lock = threading.Lock()


def get_job(
    job_name: str,
    kind: str,
    limited_exceptions: tuple[type[BaseException], ...] = (),
    suppress_limited: bool = False,
    every: Seconds | None = None,
    cron: str | None = None,
    grace: Seconds | None = None,
    max_runtime: Seconds | None = None,
) -> Job:
    """The process-wide definition of ``job_name``; created (and validated) on first use.

    Calls that repeat the same options reuse the definition. Options given once (e.g. the
    cadence on the first call) hold for later calls that give none; conflicting options for
    the same job raise ``ValueError``.
    """
    key = (job_name, kind, limited_exceptions, suppress_limited, every, cron, grace, max_runtime)
    job = _definitions.get(key)
    if job is not None:
        return job
    fresh = Job(
        job_name,
        kind=kind,
        limited_exceptions=limited_exceptions,
        suppress_limited=suppress_limited,
        every=every,
        cron=cron,
        grace=grace,
        max_runtime=max_runtime,
        register=False,
    )
    bare = fresh.cadence == Cadence() and not fresh.limited_exceptions and not suppress_limited
    with _jobs_lock:
        job = _jobs.get((fresh.job_name, fresh.kind))
        if job is None:
            job = _jobs[(fresh.job_name, fresh.kind)] = fresh
            fresh.register()
        elif bare and job.cadence == Cadence() and not job.limited_exceptions:
            pass
        elif bare:
            pass  # a later call without options reuses the full definition
        elif job.cadence == Cadence() and not job.limited_exceptions and not job.suppress_limited:
            # First seen without options, now with them: the richer definition wins.
            job = _jobs[(fresh.job_name, fresh.kind)] = fresh
            fresh.register()
            for k in list(_definitions):
                if k[0] == fresh.job_name and k[1] == fresh.kind:
                    _definitions[k] = fresh
            if (job_name, kind) in _plain_definitions:
                _plain_definitions[(job_name, kind)] = fresh
        elif (job.cadence, job.limited_exceptions, job.suppress_limited) != (
            fresh.cadence,
            fresh.limited_exceptions,
            fresh.suppress_limited,
        ):
            raise ValueError(
                f"job {job_name!r} ({kind}) is already defined with different options: "
                "define it once (e.g. with Job(...)) and reuse it"
            )
        _definitions[key] = job
        if bare:
            _plain_definitions[(job_name, kind)] = job
    return job


def track_run(
    job_name: str,
    *,
    kind: str,
    tenant: object = None,
    limited_exceptions: tuple[type[BaseException], ...] = (),
    suppress_limited: bool = False,
    every: Seconds | None = None,
    cron: str | None = None,
    grace: Seconds | None = None,
    max_runtime: Seconds | None = None,
) -> Run:
    """Track one run of ``job_name``: ``with track_run("sync", kind="resource") as run: ...``.

    ``tenant=None`` labels the run ``system``. An exception marks the run ``failure`` and
    propagates unchanged; one of ``limited_exceptions`` marks it ``limited`` and also
    propagates unless ``suppress_limited=True``. ``every``/``cron``, ``grace`` and
    ``max_runtime`` declare the expected cadence for the missed-run and stuck-run alerts.
    """
    if (
        every is None
        and cron is None
        and grace is None
        and max_runtime is None
        and not limited_exceptions
        and not suppress_limited
    ):
        job = _plain_definitions.get((job_name, kind))
    else:
        job = _definitions.get(
            (job_name, kind, limited_exceptions, suppress_limited, every, cron, grace, max_runtime)
        )
    if job is None:
        job = get_job(
            job_name, kind, limited_exceptions, suppress_limited, every, cron, grace, max_runtime
        )
    return Run(job, tenant)


class _NoRun(Run):
    """What ``current_run()`` returns outside any run: accepts calls and records nothing."""

    __slots__ = ()

    def add_resources(self, n: int | float = 1) -> None:
        errors.instrumentation_error("current_run() outside a tracked run")


_NO_JOB = Job("no-run", kind="resource", store=Store())


def current_run() -> Run:
    """The innermost run active in this context (thread, asyncio task).

    Outside any run this returns an inert run whose calls are ignored (and logged once),
    so library code can report resources without knowing whether it is being tracked.
    """
    run = _current.get()
    if run is None:
        return _NoRun(_NO_JOB)
    return run


def reset_for_tests(store: Store = STORE) -> None:
    """Forget every job definition and total."""
    with _jobs_lock:
        _jobs.clear()
        _definitions.clear()
        _plain_definitions.clear()
    store.reset()
