"""In-process totals for every (kind, job_name, tenant) series.

The per-run hot path only adds numbers here under one lock; exporters read the totals when
they are collected (a Prometheus scrape, an OTLP export cycle). This keeps a run far cheaper
than calling a metrics client per value, and gives every exporter the same numbers.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from otel_jobtrack._core import errors
from otel_jobtrack._core.contract import DURATION_BUCKETS, STATES

OVERFLOW = "__overflow__"
"""Label value shared by the tenants (or job names) beyond a cardinality limit."""

DEFAULT_MAX_TENANTS_PER_JOB = 1000
DEFAULT_MAX_JOB_NAMES = 1000

STATE_INDEX = {state: i for i, state in enumerate(STATES)}
_BOUNDS = DURATION_BUCKETS
_NSTATES = len(STATES)


class Series:
    """Totals of one (kind, job_name, tenant) combination. Mutated only under the store lock."""

    __slots__ = (
        "buckets",
        "duration_sums",
        "exporter_cache",
        "in_progress",
        "job_name",
        "kind",
        "last_end",
        "overflow",
        "resources",
        "runs",
        "starts",
        "tenant",
    )

    def __init__(self, kind: str, job_name: str, tenant: str) -> None:
        self.kind = kind
        self.job_name = job_name
        self.tenant = tenant
        self.runs = [0] * _NSTATES
        self.duration_sums = [0.0] * _NSTATES
        # Non-cumulative counts: index i counts durations <= _BOUNDS[i]; the last is +Inf.
        self.buckets = [[0] * (len(_BOUNDS) + 1) for _ in range(_NSTATES)]
        self.last_end: list[float | None] = [None] * _NSTATES
        self.resources: int | float = 0
        self.in_progress = 0
        self.starts: dict[int, float] = {}
        # Per-exporter precomputed objects (attribute dicts, mmap values), keyed by exporter.
        self.exporter_cache: dict[str, object] = {}
        # Set on the catch-all series of a cardinality limit: "tenant" or "job_name".
        self.overflow: str | None = None

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.kind, self.job_name, self.tenant)

    def oldest_start(self) -> float | None:
        return min(self.starts.values()) if self.starts else None


SeriesTotals = tuple[
    Series,
    list[int],
    list[float],
    list[list[int]],
    list[float | None],
    int | float,
    int,
    float | None,
]
"""(series, runs, duration sums, buckets, last ends, resources, in progress, oldest start)."""


@dataclass(frozen=True)
class Cadence:
    """How often a job is expected to run, as declared where it is defined."""

    expected_interval: float | None = None
    grace: float | None = None
    max_runtime: float | None = None


class RunSink(Protocol):
    """An exporter that wants to see each run as it happens (not only at collection).

    ``oldest_start`` is the start time of the oldest run of the series still in progress
    after this event (``None`` when none is). Sinks with ``locked = True`` are called while
    the store lock is held, so they see events in order; they must be quick and must not
    call back into the store.
    """

    locked: bool

    def run_started(
        self, series: Series, start_wall: float, oldest_start: float | None
    ) -> None: ...

    def run_finished(
        self,
        series: Series,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
        oldest_start: float | None,
    ) -> None: ...


class Store:
    """All series of this process, plus declared job cadences."""

    def __init__(
        self,
        max_tenants_per_job: int = DEFAULT_MAX_TENANTS_PER_JOB,
        max_job_names: int = DEFAULT_MAX_JOB_NAMES,
    ) -> None:
        self.lock = threading.Lock()
        self.max_tenants_per_job = max_tenants_per_job
        self.max_job_names = max_job_names
        self.series: dict[tuple[str, str, str], Series] = {}
        self.tenant_counts: dict[tuple[str, str], int] = {}
        self.overflow_runs: dict[tuple[str, str, str], int] = {}
        self._warned_overflow: set[tuple[str, str, str]] = set()
        self.cadences: dict[tuple[str, str], Cadence] = {}
        self.sinks: tuple[RunSink, ...] = ()
        self.locked_sinks: tuple[RunSink, ...] = ()
        self._on_reset: list[Callable[[], None]] = []

    def get_series(self, kind: str, job_name: str, tenant: str) -> Series:
        """The series of this label set, or the overflow series once a limit is reached.

        At most ``max_job_names`` job names and ``max_tenants_per_job`` tenants per job get
        series of their own; later ones share one series whose tenant (or job name) is
        ``__overflow__``, so totals stay exact while the number of series stays bounded.
        """
        key = (kind, job_name, tenant)
        series = self.series.get(key)
        if series is None:
            with self.lock:
                series = self.series.get(key)
                if series is None:
                    series = self._new_series(kind, job_name, tenant)
        return series

    def _new_series(self, kind: str, job_name: str, tenant: str) -> Series:
        overflow = None
        job = (kind, job_name)
        tenants = self.tenant_counts.get(job)
        if tenants is None and len(self.tenant_counts) >= self.max_job_names:
            overflow, job_name, tenant = "job_name", OVERFLOW, OVERFLOW
        elif tenants is not None and tenants >= self.max_tenants_per_job:
            overflow, tenant = "tenant", OVERFLOW
        key = (kind, job_name, tenant)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(kind, job_name, tenant)
            series.overflow = overflow
            if overflow is None:
                self.tenant_counts[job] = (tenants or 0) + 1
        if overflow is not None:
            warn = (kind, job[1] if overflow == "tenant" else OVERFLOW, overflow)
            if warn not in self._warned_overflow:
                self._warned_overflow.add(warn)
                errors.logger.warning(
                    "otel-jobtrack: more than %d %s for %s job %r: further ones are counted "
                    "under %s=%r (see jobtrack_overflow_runs_total)",
                    self.max_tenants_per_job if overflow == "tenant" else self.max_job_names,
                    "tenants" if overflow == "tenant" else "job names",
                    kind,
                    job[1],
                    overflow,
                    OVERFLOW,
                )
        return series

    def declare(self, kind: str, job_name: str, cadence: Cadence) -> None:
        with self.lock:
            self.cadences[(kind, job_name)] = cadence
            sinks = self.locked_sinks + self.sinks
        for sink in sinks:
            declared = getattr(sink, "job_declared", None)
            if declared is not None:
                _call_sink(declared, kind, job_name, cadence)

    def add_sink(self, sink: RunSink) -> None:
        with self.lock:
            if sink.locked and sink not in self.locked_sinks:
                self.locked_sinks = (*self.locked_sinks, sink)
            elif not sink.locked and sink not in self.sinks:
                self.sinks = (*self.sinks, sink)

    def remove_sink(self, sink: RunSink) -> None:
        with self.lock:
            self.sinks = tuple(s for s in self.sinks if s is not sink)
            self.locked_sinks = tuple(s for s in self.locked_sinks if s is not sink)

    def start(self, series: Series, token: int, start_wall: float) -> None:
        with self.lock:
            if series.overflow is not None:
                key = (series.kind, series.job_name, series.overflow)
                self.overflow_runs[key] = self.overflow_runs.get(key, 0) + 1
            series.in_progress += 1
            series.starts[token] = start_wall
            if self.locked_sinks:
                oldest = min(series.starts.values())
                for sink in self.locked_sinks:
                    _call_sink(sink.run_started, series, start_wall, oldest)
        for sink in self.sinks:
            _call_sink(sink.run_started, series, start_wall, None)

    def finish(
        self,
        series: Series,
        token: int,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
    ) -> None:
        # No calls while the lock is held: a thread switched out inside the critical section
        # makes every other thread queue behind it (measured: 3-4x lower throughput with 8
        # threads). Only the locked sinks, which need event order, run under it.
        index = bisect_left(_BOUNDS, duration)
        starts = series.starts
        with self.lock:
            series.in_progress -= 1
            if token in starts:
                del starts[token]
            series.runs[state] += 1
            series.duration_sums[state] += duration
            series.buckets[state][index] += 1
            series.resources += resources
            series.last_end[state] = end_wall
            if self.locked_sinks:
                oldest = min(starts.values()) if starts else None
                for sink in self.locked_sinks:
                    _call_sink(
                        sink.run_finished, series, state, duration, resources, end_wall, oldest
                    )
        for sink in self.sinks:
            _call_sink(sink.run_finished, series, state, duration, resources, end_wall, None)

    def totals(self) -> list[SeriesTotals]:
        """A consistent copy of every series' numbers (count == +Inf bucket), for exporters."""
        with self.lock:
            return [
                (
                    s,
                    s.runs[:],
                    s.duration_sums[:],
                    [b[:] for b in s.buckets],
                    s.last_end[:],
                    s.resources,
                    s.in_progress,
                    min(s.starts.values()) if s.starts else None,
                )
                for s in self.series.values()
            ]

    def snapshot(self) -> list[Series]:
        """Series to export. Callers read their fields; the numbers are plain Python values."""
        with self.lock:
            return list(self.series.values())

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._on_reset.append(callback)

    def reset(self) -> None:
        """Forget every total (tests, and a forked child that must not re-report its parent)."""
        with self.lock:
            self.series.clear()
            self.tenant_counts.clear()
            self.overflow_runs.clear()
            self._warned_overflow.clear()
        for callback in self._on_reset:
            callback()


def _call_sink(method: Callable[..., None], *args: object) -> None:
    try:
        method(*args)
    except Exception as exc:
        owner = getattr(method, "__self__", method)
        errors.instrumentation_error(f"exporter {type(owner).__name__}", exc)


STORE = Store()
"""The process-wide store every tracked run writes to."""


def _after_fork_in_child() -> None:
    # A fresh lock: the parent's may have been held by another thread at fork time. Fresh
    # totals: the child is a new process (a new OTLP instance, its own multiprocess files),
    # and re-reporting the parent's runs from it would count them twice.
    STORE.lock = threading.Lock()
    STORE.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
