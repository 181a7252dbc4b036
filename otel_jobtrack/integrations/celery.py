"""Celery: ``instrument(app)`` tracks every task of the app as runs of a job named like the task.

    from otel_jobtrack.integrations.celery import instrument
    instrument(app, tasks={"billing.schedule": {"kind": "schedule", "tenant": "tenant_id"}})

**Signals, not a Task base class.** The task signals (``task_prerun``/``task_postrun``) see
every task of the app whatever its base class (an app's own base, third-party tasks, tasks
defined before or after the call), so one call instruments everything and no task changes.
They run in the thread that runs the task, so ``current_run()`` works inside it.

What each task becomes:

- **Job name**: Celery's task name (``billing.schedule``), not the Python function's.
- **Kind**: ``cron`` for tasks in ``beat_schedule`` (``beat_kind``), else ``default_kind``
  (``resource``); per task with the ``tasks=`` mapping or the task option
  ``@app.task(jobtrack={"kind": "schedule"})``.
- **Tenant**: ``tenant=`` names an argument of the task (``"tenant_id"``, or
  ``"tenant.slug"`` for an attribute of it) or is a callable ``(task, args, kwargs)``. Given
  to ``instrument()``, it applies to the tasks that have that argument (the others are
  ``system``); given for one task, a task without that argument stops the worker at start.
- **Cadence**: from ``beat_schedule``: a number or ``timedelta`` (or ``schedule``) declares
  ``every``; a ``crontab`` declares its cron expression; ``solar`` and custom schedules have no
  fixed interval and declare nothing (logged once). A task scheduled by several entries
  declares the longest interval. ``every``/``cron``/``grace``/``max_runtime`` per task win.
- **States**: success; an exception: ``failure`` (``limited`` for ``limited_exceptions``);
  ``Ignore`` (also ``Task.replace``): success; ``Reject``: limited.
- **Retries** (``self.retry()``, ``autoretry_for``): each attempt that ends in a retry is
  ``limited`` by default (``retry="limited"``), only the final outcome is ``success`` or
  ``failure``. So a task that fails once and then succeeds shows 1 limited + 1 success and
  no failure: ``JobTrackRunFailures`` measures tasks that really failed, while a surge of
  retries shows in ``JobTrackRunsLimited`` and on the dashboards. ``retry="failure"``
  (globally or per task) counts each retried attempt as a failure instead.

Processes (prefork pool):

- The runs happen in pool children. ``/metrics`` is served by the main process
  (``serve_metrics=True``, port from ``OTEL_EXPORTER_PROMETHEUS_PORT``/``metrics_port``,
  default 9464) from the multiprocess directory. Without ``PROMETHEUS_MULTIPROC_DIR``,
  ``multiprocess="auto"`` makes a private one before the pool starts (removed at shutdown);
  ``multiprocess="off"`` leaves it and warns once that ``/metrics`` will have no runs.
- A child SIGKILLed mid-task (OOM killer, hard time limit) gives the main process no notice:
  its runs are finished as killed failures by the sweep that runs at every scrape and before
  the pool replaces a child (:mod:`otel_jobtrack.exporters.prometheus.dead_processes`).
- Pool children leave through ``os._exit`` (no exit handlers), whether recycled by
  ``--max-tasks-per-child``, ``--max-memory-per-child`` or shut down: OTLP (and a Pushgateway)
  is flushed from ``worker_process_shutdown``, bounded by ``exit_flush_timeout``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

try:
    from celery import Celery, signals
    from celery.exceptions import Retry
    from celery.states import IGNORED, REJECTED, RETRY, SUCCESS
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "otel_jobtrack.integrations.celery needs Celery: pip install 'otel-jobtrack[celery]'"
    ) from exc

from otel_jobtrack._core import errors
from otel_jobtrack._core.labels import validate_job_name, validate_kind, validate_seconds
from otel_jobtrack._core.run import Job, Run, Seconds
from otel_jobtrack.integrations._common import (
    TenantSpec,
    call_tenant,
    interval_of,
    private_multiprocess_dir,
    tenant_from_arguments,
)

logger = logging.getLogger("otel_jobtrack")

RETRY_STATES = ("limited", "failure")


@dataclass(frozen=True)
class TaskOptions:
    """How one task is tracked; ``None`` fields fall back to ``instrument()``'s defaults."""

    kind: str | None = None
    name: str | None = None
    tenant: TenantSpec = None
    every: Seconds | None = None
    cron: str | None = None
    grace: Seconds | None = None
    max_runtime: Seconds | None = None
    retry: str | None = None
    limited_exceptions: tuple[type[BaseException], ...] = ()
    track: bool = True

    @classmethod
    def of(cls, value: TaskOptions | Mapping[str, Any] | None, where: str) -> TaskOptions:
        if value is None:
            return cls()
        if isinstance(value, TaskOptions):
            options = value
        elif isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"{where}: unknown option(s) {sorted(unknown)}; "
                    f"expected some of {sorted(cls.__dataclass_fields__)}"
                )
            options = cls(**value)
        else:
            raise ValueError(f"{where}: expected a mapping or TaskOptions, got {value!r}")
        options.check(where)
        return options

    def check(self, where: str) -> None:
        if self.kind is not None:
            validate_kind(self.kind)
        if self.name is not None:
            validate_job_name(self.name)
        if self.retry is not None and self.retry not in RETRY_STATES:
            raise ValueError(f"{where}: retry must be one of {RETRY_STATES}, got {self.retry!r}")
        if self.every is not None and self.cron is not None:
            raise ValueError(f"{where}: declare either every= or cron=, not both")
        if self.tenant is not None and not (isinstance(self.tenant, str) or callable(self.tenant)):
            raise ValueError(f"{where}: tenant must be an argument name or a callable")
        for name in ("every", "grace", "max_runtime"):
            validate_seconds(f"{where}: {name}", getattr(self, name), allow_zero=name == "grace")
        for exc_type in self.limited_exceptions:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise ValueError(f"{where}: limited_exceptions must be exception types")


@dataclass
class _Tracked:
    """A task's job and how to find its tenant (built once per process)."""

    job: Job | None
    tenant: Callable[[Any, tuple[Any, ...], Mapping[str, Any]], object] | None
    retry: str


@dataclass
class CeleryInstrumentation:
    """What :func:`instrument` connected; :meth:`uninstrument` disconnects it."""

    app: Celery
    default_kind: str
    beat_kind: str
    tasks: dict[str, TaskOptions]
    tenant: TenantSpec
    retry: str
    exclude: tuple[str, ...]
    serve_metrics: bool
    metrics_port: int | None
    metrics_addr: str | None
    multiprocess: str
    exit_flush_timeout: float
    private_dir: str | None = None
    metrics_server: tuple[Any, Any] | None = None
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    _runs: dict[str, Run] = field(default_factory=dict)
    _cadences: dict[str, float] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warned: set[str] = field(default_factory=set)
    _connected: list[tuple[Any, Callable[..., None]]] = field(default_factory=list)

    # -- definitions ------------------------------------------------------------------------

    def options_for(self, task: Any) -> TaskOptions:
        name = task.name
        own = TaskOptions.of(getattr(task, "jobtrack", None), f"task {name!r} option jobtrack")
        mapped = self.tasks.get(name)
        if mapped is None:
            return own
        merged = {k: v for k, v in vars(own).items() if v != getattr(TaskOptions(), k)}
        merged.update({k: v for k, v in vars(mapped).items() if v != getattr(TaskOptions(), k)})
        return replace(TaskOptions(), **merged)

    def beat_cadences(self) -> dict[str, float]:
        """Longest declared interval of every task ``beat_schedule`` runs."""
        if self._cadences is None:
            self._cadences = cadences_from_beat(self.app.conf.beat_schedule or {}, self._note)
        return self._cadences

    def _note(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.info("otel-jobtrack: %s", message)

    def tracked_for(self, task: Any) -> _Tracked:
        name = task.name
        found = self._tracked.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._tracked.get(name)
            if found is None:
                found = self._tracked[name] = self._define(task)
        return found

    def _define(self, task: Any) -> _Tracked:
        name = task.name
        options = self.options_for(task)
        retry = options.retry or self.retry
        if not options.track or any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
            return _Tracked(None, None, retry)
        beat = self.beat_cadences()
        kind = options.kind or (self.beat_kind if name in beat else self.default_kind)
        every: Seconds | None = options.every
        cron = options.cron
        if every is None and cron is None and name in beat:
            every = beat[name]
        job = Job(
            options.name or name,
            kind=kind,
            limited_exceptions=options.limited_exceptions,
            every=every,
            cron=cron,
            grace=options.grace,
            max_runtime=options.max_runtime,
        )
        if options.tenant is not None:
            resolver = self._tenant_resolver(task, options.tenant)
        else:
            try:
                resolver = self._tenant_resolver(task, self.tenant)
            except ValueError:  # the app-wide argument name: tasks without it have no tenant
                resolver = None
        return _Tracked(job, resolver, retry)

    def _tenant_resolver(
        self, task: Any, spec: TenantSpec
    ) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], object] | None:
        if spec is None:
            return None
        where = f"task {task.name!r}"
        if callable(spec):
            user = spec
            return lambda t, args, kwargs: call_tenant(user, where, t, args, kwargs)
        resolve = tenant_from_arguments(task.run, spec, where)
        return lambda t, args, kwargs: resolve(args, kwargs)

    def check_tasks(self) -> None:
        """Validate every registered task's options now (the worker refuses to start)."""
        for name, task in list(self.app.tasks.items()):
            if getattr(task, "name", None) != name:
                continue
            tracked = self._define(task)
            self._tracked.setdefault(name, tracked)

    # -- task signals -----------------------------------------------------------------------

    def _ours(self, task: Any) -> bool:
        return getattr(task, "_app", None) is self.app or getattr(task, "app", None) is self.app

    def on_prerun(
        self,
        task_id: str | None = None,
        task: Any = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        try:
            if task is None or task_id is None or not self._ours(task):
                return
            tracked = self.tracked_for(task)
            if tracked.job is None:
                return
            tenant = None
            if tracked.tenant is not None:
                tenant = tracked.tenant(task, tuple(args or ()), dict(kwargs or {}))
            run = tracked.job.run(tenant)
            run.__enter__()
            self._runs[task_id] = run
        except Exception as exc:
            errors.instrumentation_error("celery task start", exc)

    def on_postrun(
        self,
        task_id: str | None = None,
        task: Any = None,
        retval: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        run = self._runs.pop(task_id, None) if task_id is not None else None
        if run is None:
            return
        try:
            tracked = self.tracked_for(task)
            if state in (SUCCESS, IGNORED):
                run.__exit__(None, None, None)
            elif state == RETRY:
                if tracked.retry == "limited":
                    run.mark_limited()
                    run.__exit__(None, None, None)
                else:
                    exc = retval if isinstance(retval, BaseException) else Retry()
                    run.__exit__(type(exc), exc, None)
            elif state == REJECTED:
                run.mark_limited()
                run.__exit__(None, None, None)
            else:  # FAILURE and anything unknown
                exc = retval if isinstance(retval, BaseException) else RuntimeError(state)
                run.__exit__(type(exc), exc, None)
        except Exception as exc:
            errors.instrumentation_error("celery task finish", exc)

    # -- worker lifecycle -------------------------------------------------------------------

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        if sender is not None and getattr(sender, "app", self.app) is not self.app:
            return
        try:
            self.check_tasks()
        except ValueError as exc:
            # Celery logs and ignores exceptions of signal handlers: stop the worker here,
            # with the reason, rather than run tasks with half their options.
            logger.error("otel-jobtrack: %s", exc)
            raise SystemExit(f"otel-jobtrack: {exc}") from exc
        if _is_prefork(sender):
            self._multiprocess_for_prefork()

    def _multiprocess_for_prefork(self) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from otel_jobtrack.exporters.prometheus import multiprocess

            multiprocess.enable()
            return
        if self.multiprocess == "auto":
            self.private_dir = private_multiprocess_dir("otel-jobtrack-celery-")
            logger.info(
                "otel-jobtrack: prefork pool: runs of the pool processes are summed through "
                "the private multiprocess directory %s",
                self.private_dir,
            )
        elif "prefork" not in self._warned:
            self._warned.add("prefork")
            logger.warning(
                "otel-jobtrack: Celery prefork pool without PROMETHEUS_MULTIPROC_DIR: tasks run "
                "in pool processes, so a /metrics served by the main process shows none of "
                "their runs. Set PROMETHEUS_MULTIPROC_DIR to an empty directory before the "
                "worker starts, or instrument(app, multiprocess='auto'). OTLP is unaffected."
            )

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        if not self.serve_metrics or self.metrics_server is not None:
            return
        try:
            from otel_jobtrack.exporters.prometheus.app import start_metrics_server

            self.metrics_server = start_metrics_server(self.metrics_port, self.metrics_addr)
            logger.info("otel-jobtrack: serving /metrics at %s", self.metrics_server[0].url)
        except Exception as exc:
            errors.instrumentation_error("celery metrics server", exc)

    def on_before_create_process(self, **_: Any) -> None:
        """A pool child is being (re)placed: its predecessor may have been killed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from otel_jobtrack.exporters.prometheus.dead_processes import safe_sweep

            safe_sweep()

    def on_process_shutdown(self, **_: Any) -> None:
        """A pool child leaves through ``os._exit``: deliver its runs first (bounded)."""
        flush(self.exit_flush_timeout)

    def on_worker_shutdown(self, **_: Any) -> None:
        flush(self.exit_flush_timeout)
        if self.metrics_server is not None:
            server, self.metrics_server = self.metrics_server[0], None
            server.shutdown()
            server.server_close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        for signal, handler in (
            (signals.task_prerun, self.on_prerun),
            (signals.task_postrun, self.on_postrun),
            (signals.worker_init, self.on_worker_init),
            (signals.worker_ready, self.on_worker_ready),
            (signals.worker_before_create_process, self.on_before_create_process),
            (signals.worker_process_shutdown, self.on_process_shutdown),
            (signals.worker_shutdown, self.on_worker_shutdown),
        ):
            signal.connect(handler, weak=False)
            self._connected.append((signal, handler))

    def uninstrument(self) -> None:
        """Disconnect every signal handler (tests, or re-instrumenting with other options)."""
        for signal, handler in self._connected:
            signal.disconnect(handler)
        self._connected.clear()
        _instrumented.pop(id(self.app), None)


def flush(timeout: float) -> bool:
    """Deliver this process's runs now (OTLP, Pushgateway), within ``timeout`` seconds."""
    try:
        from otel_jobtrack.exporters import pipeline

        exporters = pipeline.current()
        return exporters.flush(timeout) if exporters is not None else True
    except Exception as exc:
        errors.instrumentation_error("celery flush", exc)
        return False


def _is_prefork(worker: Any) -> bool:
    pool = getattr(worker, "pool_cls", None)
    if isinstance(pool, str):
        try:
            from celery import concurrency

            pool = concurrency.get_implementation(pool)
        except Exception:
            return pool == "prefork"
    from celery.concurrency.prefork import TaskPool

    return isinstance(pool, type) and issubclass(pool, TaskPool)


def cadences_from_beat(
    beat_schedule: Mapping[str, Any], note: Callable[[str], None] = lambda message: None
) -> dict[str, float]:
    """Seconds between runs of each task in a ``beat_schedule`` (the longest, if several).

    Entries whose schedule has no fixed interval (``solar``, custom classes) are left out,
    with a ``note``.
    """
    out: dict[str, float] = {}
    for entry_name, entry in beat_schedule.items():
        task = entry.get("task") if isinstance(entry, Mapping) else None
        if not isinstance(task, str):
            continue
        try:
            seconds = schedule_interval(entry.get("schedule"))
        except ValueError as exc:
            note(f"beat entry {entry_name!r} ({task}) declares no cadence: {exc}")
            continue
        out[task] = max(seconds, out.get(task, 0.0))
    return out


def schedule_interval(schedule: Any) -> float:
    """Seconds between runs of a beat schedule; ``ValueError`` when it has no fixed cadence."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as every_schedule

    if isinstance(schedule, bool):
        raise ValueError(f"not a schedule: {schedule!r}")
    if isinstance(schedule, (int, float)):
        return interval_of(float(schedule))
    if isinstance(schedule, dt.timedelta):
        return interval_of(schedule.total_seconds())
    if isinstance(schedule, solar):
        raise ValueError("solar schedules follow the sun, not a fixed interval")
    if isinstance(schedule, crontab):
        return interval_of(cron=crontab_expression(schedule))
    if isinstance(schedule, every_schedule):
        return interval_of(schedule.run_every.total_seconds())
    raise ValueError(f"unknown schedule type {type(schedule).__name__}")


def crontab_expression(schedule: Any) -> str:
    """The five-field cron expression of a Celery ``crontab``."""
    fields = (
        schedule._orig_minute,
        schedule._orig_hour,
        schedule._orig_day_of_month,
        schedule._orig_month_of_year,
        schedule._orig_day_of_week,
    )
    return " ".join(_cron_field(f) for f in fields)


def _cron_field(value: Any) -> str:
    if isinstance(value, str):
        return value.replace(" ", "")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(str(v) for v in sorted(value))
    raise ValueError(f"cron field {value!r}")


_instrumented: dict[int, CeleryInstrumentation] = {}


def instrument(
    app: Celery,
    *,
    tasks: Mapping[str, TaskOptions | Mapping[str, Any]] | None = None,
    default_kind: str = "resource",
    beat_kind: str = "cron",
    tenant: TenantSpec = None,
    retry: str = "limited",
    exclude: Iterable[str] = ("celery.*",),
    serve_metrics: bool = True,
    metrics_port: int | None = None,
    metrics_addr: str | None = None,
    multiprocess: str = "auto",
    exit_flush_timeout: float = 10.0,
) -> CeleryInstrumentation:
    """Track every task of ``app``; call once where the app is defined (worker and beat).

    ``tasks`` maps task names to :class:`TaskOptions` (or dicts of them); a task's own
    ``jobtrack=`` option works the same. ``exclude``: task name patterns not tracked (Celery's
    own ``celery.*`` housekeeping by default). ``serve_metrics``: serve ``/metrics`` from the
    worker's main process once it is ready (``metrics_port``/``metrics_addr`` default to
    ``OTEL_EXPORTER_PROMETHEUS_PORT``/``_HOST``, else 9464 on localhost). ``multiprocess``:
    ``"auto"`` or ``"off"`` (see the module doc). Mistakes raise ``ValueError`` here, or when
    the worker starts for options given on the tasks.
    """
    validate_kind(default_kind)
    validate_kind(beat_kind)
    if retry not in RETRY_STATES:
        raise ValueError(f"retry must be one of {RETRY_STATES}, got {retry!r}")
    if multiprocess not in ("auto", "off"):
        raise ValueError(f"multiprocess must be 'auto' or 'off', got {multiprocess!r}")
    if tenant is not None and not (isinstance(tenant, str) or callable(tenant)):
        raise ValueError("tenant must be an argument name or a callable (task, args, kwargs)")
    if not exit_flush_timeout > 0:
        raise ValueError(f"exit_flush_timeout must be positive, got {exit_flush_timeout!r}")
    options = {
        name: TaskOptions.of(value, f"tasks[{name!r}]") for name, value in (tasks or {}).items()
    }
    previous = _instrumented.get(id(app))
    if previous is not None:
        previous.uninstrument()
    instrumentation = CeleryInstrumentation(
        app=app,
        default_kind=default_kind,
        beat_kind=beat_kind,
        tasks=options,
        tenant=tenant,
        retry=retry,
        exclude=tuple(exclude),
        serve_metrics=serve_metrics,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        multiprocess=multiprocess,
        exit_flush_timeout=float(exit_flush_timeout),
    )
    instrumentation.connect()
    _instrumented[id(app)] = instrumentation
    return instrumentation


__all__ = [
    "CeleryInstrumentation",
    "TaskOptions",
    "cadences_from_beat",
    "crontab_expression",
    "flush",
    "instrument",
    "schedule_interval",
]
