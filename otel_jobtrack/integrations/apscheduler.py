"""APScheduler 3: ``instrument(scheduler)`` tracks every run of every job, before or after start.

    from otel_jobtrack.integrations.apscheduler import instrument
    instrument(scheduler, jobs={"sync-acme": {"kind": "schedule", "tenant": "tenant_id"}})

- **Runs**: each executor of the scheduler (those added later too) runs the job's function
  through a tracked wrapper, set on the job when it is submitted; the stored job (its
  ``func_ref``) is unchanged, so persistent job stores are unaffected. ``current_run()`` works
  inside the function; coroutine functions stay coroutine functions (``AsyncIOExecutor``).
  Jobs of a ``ProcessPoolExecutor`` run in another process from their stored reference and
  are not tracked; decorate their function with ``@tracked`` instead.
- **Job name**: the function's ``module.qualname`` (``name="func"``, the same as
  ``@tracked``), or the job's id (``name="id"``) or name (``name="name"``), or a callable
  ``(job) -> str``; **kind** ``cron`` by default; **tenant** from an argument of the function
  (``tenant="tenant_id"``) or a callable ``(job) -> tenant``; per job id with ``jobs=``.
- **Cadence** from the trigger, declared when the job is added: ``IntervalTrigger`` -> its
  interval (plus jitter); ``CronTrigger`` -> the longest gap of its schedule (plus jitter);
  ``DateTrigger`` (one run) and combined triggers declare none. Jobs sharing a name declare
  the longest interval among them.
- **Skipped runs**: a run not started because ``max_instances`` were already running is a
  ``limited`` run (duration 0); a misfire (run time missed by more than
  ``misfire_grace_time``) is ``limited`` too by default (``misfire="failure"`` to alert on it as
  a failure). Both stay visible in ``JobTrackRunsLimited`` and on the dashboards, and a job
  that never gets to run also fires ``JobTrackMissedRun``.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    from apscheduler.events import (
        EVENT_JOB_ADDED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_JOB_MODIFIED,
        JobEvent,
    )
    from apscheduler.schedulers.base import BaseScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "otel_jobtrack.integrations.apscheduler needs APScheduler 3: "
        "pip install 'otel-jobtrack[apscheduler]'"
    ) from exc

from otel_jobtrack._core import errors
from otel_jobtrack._core.cadence import cron_max_interval
from otel_jobtrack._core.labels import validate_job_name, validate_kind
from otel_jobtrack._core.naming import default_job_name
from otel_jobtrack._core.run import Job, Run
from otel_jobtrack.integrations._common import TenantSpec, call_tenant, tenant_from_arguments

logger = logging.getLogger("otel_jobtrack")

MISFIRE_STATES = ("limited", "failure")
_MARK = "__otel_jobtrack_original__"


@dataclass(frozen=True)
class JobOptions:
    """How one scheduler job is tracked (``None``: the ``instrument()`` default)."""

    name: str | None = None
    kind: str | None = None
    tenant: TenantSpec = None
    limited_exceptions: tuple[type[BaseException], ...] = ()
    track: bool = True


@dataclass
class _Definition:
    """One scheduler job: the tracked job's name and how to find the tenant of a call."""

    name: str
    tenant: Callable[[tuple[Any, ...], Mapping[str, Any]], object] | None


def trigger_interval(trigger: Any) -> float | None:
    """Longest expected gap between two fire times of an APScheduler trigger, if it has one."""
    jitter = float(getattr(trigger, "jitter", None) or 0)
    if isinstance(trigger, IntervalTrigger):
        return float(trigger.interval.total_seconds()) + jitter
    if isinstance(trigger, CronTrigger):
        expression = cron_expression(trigger)
        seconds = _values(next(f for f in trigger.fields if f.name == "second"), 59)
        if expression is not None and seconds:
            try:
                minutes_gap = cron_max_interval(expression)
            except ValueError:
                pass
            else:
                # Within a firing minute the gaps between the seconds; across minutes the
                # gap between firing minutes less the span the seconds cover.
                within = max((b - a for a, b in itertools.pairwise(seconds)), default=0)
                return max(within, minutes_gap - (seconds[-1] - seconds[0])) + jitter
        gap = _longest_gap(trigger)
        return None if gap is None else gap + jitter
    return None


def cron_expression(trigger: CronTrigger) -> str | None:
    """The five-field cron expression of the minutes a ``CronTrigger`` fires in."""
    fields = {f.name: f for f in trigger.fields}
    if not (fields["year"].is_default and fields["week"].is_default):
        return None
    weekdays = _weekdays(fields["day_of_week"])
    if weekdays is None:
        return None
    parts = [str(fields[name]) for name in ("minute", "hour", "day", "month")]
    return " ".join([*parts, weekdays])


def _values(cron_field: Any, highest: int) -> list[int] | None:
    """The values a numeric field allows (``None`` for expressions such as ``last``)."""
    values: set[int] = set()
    for expr in cron_field.expressions:
        kind = type(expr).__name__
        if kind == "AllExpression":
            values.update(range(0, highest + 1, expr.step or 1))
        elif kind in ("RangeExpression", "WeekdayRangeExpression"):
            last = expr.last if expr.last is not None else highest
            values.update(range(expr.first, last + 1, expr.step or 1))
        else:
            return None
    return sorted(values)


def _weekdays(dow_field: Any) -> str | None:
    """APScheduler numbers weekdays from Monday = 0, cron from Sunday = 0."""
    if dow_field.is_default:
        return "*"
    days = _values(dow_field, 6)
    if days is None:
        return None
    return ",".join(str((d + 1) % 7) for d in days)


def _longest_gap(trigger: Any, limit: int = 20_000) -> float | None:
    """Walk the fire times (up to four years or ``limit`` of them) for the longest gap."""
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=4 * 366)
    previous = trigger.get_next_fire_time(None, start)
    gap = 0.0
    for _ in range(limit):
        if previous is None or previous > end:
            break
        following = trigger.get_next_fire_time(previous, previous + dt.timedelta(microseconds=1))
        if following is None:
            break
        gap = max(gap, (following - previous).total_seconds())
        previous = following
    else:
        if previous - start < dt.timedelta(days=8):
            return None  # too many fire times to know the longest gap of a week
    return gap or None


@dataclass
class APSchedulerInstrumentation:
    """What :func:`instrument` hooked into; :meth:`uninstrument` undoes it."""

    scheduler: BaseScheduler
    kind: str
    name: str | Callable[[Any], str]
    tenant: TenantSpec
    jobs: dict[str, JobOptions]
    misfire: str
    _definitions: dict[str, _Definition] = field(default_factory=dict)
    _named: dict[str, tuple[Job, float | None]] = field(default_factory=dict)
    _intervals: dict[str, float | None] = field(default_factory=dict)
    _submitted: dict[str, tuple[_Definition, tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=dict
    )
    _hooked: list[Any] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _original_add_executor: Any = None

    # -- definitions ------------------------------------------------------------------------

    def options(self, job: Any) -> JobOptions:
        return self.jobs.get(job.id, JobOptions())

    def job_name(self, job: Any, options: JobOptions) -> str:
        if options.name:
            return options.name
        func = getattr(job.func, _MARK, job.func)
        if callable(self.name):
            return validate_job_name(self.name(job))
        if self.name == "id":
            return str(job.id)
        if self.name == "name":
            return str(job.name)
        return default_job_name(func)

    def define(self, job: Any) -> _Definition | None:
        """The job's definition, (re)declaring the cadence of its name if new or longer."""
        options = self.options(job)
        if not options.track:
            return None
        name = self.job_name(job, options)
        key = str(job.trigger)  # triggers of persistent stores are new objects at each load
        if key not in self._intervals:
            self._intervals[key] = trigger_interval(job.trigger)
        interval = self._intervals[key]
        with self._lock:
            known = self._named.get(name)
            if known is None or (
                interval is not None and (known[1] is None or interval > known[1])
            ):
                tracked_job = Job(
                    name,
                    kind=options.kind or self.kind,
                    limited_exceptions=options.limited_exceptions,
                    every=interval,
                )
                self._named[name] = (tracked_job, interval)
            definition = self._definitions.get(job.id)
            if definition is None or definition.name != name:
                definition = self._definitions[job.id] = _Definition(
                    name, self._tenant(job, options)
                )
            return definition

    def job_for(self, definition: _Definition) -> Job:
        return self._named[definition.name][0]

    def _tenant(
        self, job: Any, options: JobOptions
    ) -> Callable[[tuple[Any, ...], Mapping[str, Any]], object] | None:
        spec = options.tenant if options.tenant is not None else self.tenant
        if spec is None:
            return None
        where = f"scheduler job {job.id!r}"
        if callable(spec):
            user = spec
            return lambda args, kwargs: call_tenant(user, where, job)
        func = getattr(job.func, _MARK, job.func)
        try:
            return tenant_from_arguments(func, spec, where)
        except ValueError:
            if options.tenant is not None:
                raise
            return None  # the scheduler-wide argument name: jobs without it have no tenant

    # -- runs -------------------------------------------------------------------------------

    def wrap(self, job: Any) -> None:
        """Run ``job`` through a tracked wrapper from now on (idempotent)."""
        definition = self.define(job)
        if definition is None:
            return
        self._submitted[job.id] = (definition, tuple(job.args), dict(job.kwargs))
        if hasattr(job.func, _MARK):
            return
        original = job.func
        instrumentation = self

        def start(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Run:
            tenant = definition.tenant(args, kwargs) if definition.tenant is not None else None
            return instrumentation.job_for(definition).run(tenant)

        wrapper: Callable[..., Any]
        if _is_coroutine_function(original):

            async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                async with start(args, kwargs):
                    return await original(*args, **kwargs)

            wrapper = tracked_async
        else:

            def tracked_call(*args: Any, **kwargs: Any) -> Any:
                with start(args, kwargs):
                    return original(*args, **kwargs)

            wrapper = tracked_call
        functools.update_wrapper(wrapper, original)
        setattr(wrapper, _MARK, original)
        job.func = wrapper  # this object only: the stored reference stays the original

    def on_event(self, event: JobEvent) -> None:
        try:
            if event.code in (EVENT_JOB_ADDED, EVENT_JOB_MODIFIED):
                job = self.scheduler.get_job(event.job_id, event.jobstore)
                if job is not None:
                    self.define(job)
                return
            # Skips come from an executor's thread, possibly while scheduler.shutdown() holds
            # the job store lock and waits for that thread: no scheduler call here, only
            # what the submission of the job showed.
            seen = self._submitted.get(event.job_id)
            if seen is None:
                return
            definition, args, kwargs = seen
            if event.code == EVENT_JOB_MAX_INSTANCES:
                times = len(getattr(event, "scheduled_run_times", None) or [None])
                state = "limited"
            else:  # EVENT_JOB_MISSED
                times, state = 1, self.misfire
            tenant = definition.tenant(args, kwargs) if definition.tenant is not None else None
            for _ in range(times):
                _skipped(self.job_for(definition).run(tenant), state)
        except Exception as exc:
            errors.instrumentation_error("apscheduler event", exc)

    # -- hooks ------------------------------------------------------------------------------

    def hook_executor(self, executor: Any) -> None:
        if getattr(executor, "_otel_jobtrack_hooked", None) is self:
            return
        original = executor.submit_job

        def submit_job(job: Any, run_times: Any) -> Any:
            try:
                self.wrap(job)
            except Exception as exc:
                errors.instrumentation_error("apscheduler submit", exc)
            return original(job, run_times)

        executor.submit_job = submit_job
        executor._otel_jobtrack_hooked = self
        self._hooked.append((executor, original))

    def install(self) -> None:
        scheduler = self.scheduler
        with scheduler._executors_lock:
            for executor in scheduler._executors.values():
                self.hook_executor(executor)
        self._original_add_executor = scheduler.add_executor

        def add_executor(executor: Any, alias: str = "default", **options: Any) -> None:
            self._original_add_executor(executor, alias, **options)
            with scheduler._executors_lock:
                added = scheduler._executors.get(alias)
            if added is not None:
                self.hook_executor(added)

        scheduler.add_executor = add_executor
        scheduler.add_listener(
            self.on_event,
            EVENT_JOB_ADDED | EVENT_JOB_MODIFIED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED,
        )
        for job in scheduler.get_jobs():
            self.define(job)  # cadences declared now, before any run

    def uninstrument(self) -> None:
        """Remove the hooks (jobs already wrapped keep being tracked until reloaded)."""
        self.scheduler.remove_listener(self.on_event)
        if self._original_add_executor is not None:
            self.scheduler.add_executor = self._original_add_executor
        for executor, original in self._hooked:
            executor.submit_job = original
            executor._otel_jobtrack_hooked = None
        self._hooked.clear()


def _skipped(run: Run, state: str) -> None:
    """A run that did not happen (skipped by the scheduler), recorded with duration 0."""
    if state == "limited":
        with run:
            run.mark_limited()
        return
    try:
        with run:
            raise _Misfire()
    except _Misfire:
        pass


class _Misfire(Exception):
    """A run time the scheduler missed (recorded as a failure with ``misfire="failure"``)."""


def _is_coroutine_function(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func)


def instrument(
    scheduler: BaseScheduler,
    *,
    kind: str = "cron",
    name: str | Callable[[Any], str] = "func",
    tenant: TenantSpec = None,
    jobs: Mapping[str, JobOptions | Mapping[str, Any]] | None = None,
    misfire: str = "limited",
) -> APSchedulerInstrumentation:
    """Track every job of ``scheduler`` (added before or after this call, started or not)."""
    validate_kind(kind)
    if not (callable(name) or name in ("func", "id", "name")):
        raise ValueError(f"name must be 'func', 'id', 'name' or a callable, got {name!r}")
    if misfire not in MISFIRE_STATES:
        raise ValueError(f"misfire must be one of {MISFIRE_STATES}, got {misfire!r}")
    if tenant is not None and not (isinstance(tenant, str) or callable(tenant)):
        raise ValueError("tenant must be an argument name or a callable (job) -> tenant")
    options: dict[str, JobOptions] = {}
    for job_id, value in (jobs or {}).items():
        if isinstance(value, Mapping):
            unknown = set(value) - set(JobOptions.__dataclass_fields__)
            if unknown:
                raise ValueError(f"jobs[{job_id!r}]: unknown option(s) {sorted(unknown)}")
            value = JobOptions(**value)
        if not isinstance(value, JobOptions):
            raise ValueError(f"jobs[{job_id!r}]: expected a mapping or JobOptions")
        if value.kind is not None:
            validate_kind(value.kind)
        if value.name is not None:
            validate_job_name(value.name)
        options[job_id] = value
    instrumentation = APSchedulerInstrumentation(
        scheduler=scheduler, kind=kind, name=name, tenant=tenant, jobs=options, misfire=misfire
    )
    instrumentation.install()
    return instrumentation


__all__ = [
    "APSchedulerInstrumentation",
    "JobOptions",
    "cron_expression",
    "instrument",
    "trigger_interval",
]
