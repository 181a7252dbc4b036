"""Multiprocess mode: every process writes prometheus_client's mmap files, one scrape sums them.

Used when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn, Celery prefork, multiprocessing
pools). Files are in prometheus_client's own format, so an application that already serves
``MultiProcessCollector`` output gets the ``jobtrack_*`` families too. How each family
aggregates across processes:

- ``jobtrack_runs_total``, ``jobtrack_resources_total``, the duration histogram: summed;
- ``jobtrack_runs_in_progress``: summed over live processes (``livesum``);
- ``jobtrack_oldest_run_start_timestamp_seconds``: minimum over live processes;
- ``jobtrack_last_run_timestamp_seconds`` and the declared cadence gauges: maximum, and they
  survive the process that wrote them, so a dead worker's last success is still known.

When a process dies, its runs in progress are finished as failures and counted in
``jobtrack_killed_runs_total`` (see :mod:`.dead_processes`): call :func:`mark_process_dead`
(which includes prometheus_client's) from gunicorn's ``child_exit`` hook; the registry built by
:func:`multiprocess_registry` also sweeps the serving process's dead children at every scrape
(a Celery prefork parent gets no notice when a pool child is SIGKILLed).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from otel_jobtrack._core import contract as c
from otel_jobtrack._core import errors
from otel_jobtrack._core.store import STORE, Cadence, Series, Store
from otel_jobtrack.exporters.prometheus.dead_processes import (
    mark_process_dead,
    register_process,
    safe_sweep,
    sweep_dead_processes,
)

__all__ = [
    "MultiprocessSink",
    "enable",
    "mark_process_dead",
    "multiprocess_registry",
    "sweep_dead_processes",
]

_LE = [str(float(b)) for b in c.DURATION_BUCKETS] + ["+Inf"]
_RUN_LABELS = list(c.RUN_LABELS)
_SERIES_LABELS = list(c.SERIES_LABELS)
_JOB_LABELS = list(c.JOB_LABELS)
_INF = math.inf
_LOCK_TYPE = type(threading.Lock())


def _value_class() -> Any:
    # One value class per process: prometheus_client keeps one mmap per file in it, and a
    # second class writing the same file would corrupt it.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return values.ValueClass


def _base(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


_PACK_VALUE = struct.Struct("dd").pack
_INT = struct.Struct("i")
_INITIAL_SIZE = 1 << 16


class _OwnFile:
    """One of this process's own files, in prometheus_client's mmap format.

    Named ``<type>_<pid>-jobtrack.db``, so nothing else in the process writes it: a write is
    one slice assignment of the store's absolute total at a position fixed when the key was
    added, with no lock but the store's. The format: a 4-byte "bytes used", 4 bytes padding,
    then entries of (4-byte key length, UTF-8 key padded to 8 bytes, value, timestamp).
    """

    def __init__(self, path: str) -> None:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            # A dead process had this pid: keep its totals in the sum under another name.
            os.replace(path, f"{path[:-3]}-{time.time_ns()}.db")
        self._file = open(path, "w+b")  # noqa: SIM115 - lives as long as the process
        self._file.truncate(_INITIAL_SIZE)
        self._capacity = _INITIAL_SIZE
        self.m = mmap.mmap(self._file.fileno(), self._capacity)
        self._used = 8
        self.m[0:4] = _INT.pack(self._used)

    def position(self, key: str, initial: float = 0.0) -> int:
        """Append ``key`` and return where its value lives."""
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        entry = _INT.pack(len(encoded)) + padded + _PACK_VALUE(initial, 0.0)
        while self._used + len(entry) > self._capacity:
            self._capacity *= 2
            self._file.truncate(self._capacity)
            self.m = mmap.mmap(self._file.fileno(), self._capacity)
        self.m[self._used : self._used + len(entry)] = entry
        self._used += len(entry)
        self.m[0:4] = _INT.pack(self._used)
        return self._used - 16

    def write(self, position: int, value: float) -> None:
        self.m[position : position + 16] = _PACK_VALUE(value, 0.0)


class _OwnFiles:
    """This process's own files for counters, the histogram and max-mode gauges.

    The live gauges (in progress, oldest start) instead go through prometheus_client's value
    class, because ``mark_process_dead`` removes only files named ``gauge_<mode>_<pid>.db``
    and other code in the process may write those too.
    """

    def __init__(self, directory: str) -> None:
        pid = os.getpid()
        self.directory = directory
        self.counter = _OwnFile(os.path.join(directory, f"counter_{pid}-jobtrack.db"))
        self.histogram = _OwnFile(os.path.join(directory, f"histogram_{pid}-jobtrack.db"))
        self.gauge_max = _OwnFile(os.path.join(directory, f"gauge_max_{pid}-jobtrack.db"))


class _StateKeys:
    """Positions of one (series, state)'s histogram and last-run gauge in the own files."""

    __slots__ = ("buckets", "last", "sum")

    def __init__(self, files: _OwnFiles, labels: list[str]) -> None:
        hist = _base(c.RUN_DURATION)
        help_ = c.HELP[c.RUN_DURATION]
        self.sum = files.histogram.position(
            mmap_key(hist, hist + "_sum", _RUN_LABELS, labels, help_)
        )
        self.buckets = [
            files.histogram.position(
                mmap_key(hist, hist + "_bucket", [*_RUN_LABELS, "le"], [*labels, le], help_)
            )
            for le in _LE
        ]
        self.last = files.gauge_max.position(
            mmap_key(
                c.LAST_RUN_TIMESTAMP,
                c.LAST_RUN_TIMESTAMP,
                _RUN_LABELS,
                labels,
                c.HELP[c.LAST_RUN_TIMESTAMP],
            )
        )


class _SeriesFiles:
    """Positions and live values of one series, created on first use."""

    __slots__ = (
        "in_progress",
        "labels",
        "oldest",
        "oldest_written",
        "resources",
        "runs",
        "states",
    )

    def __init__(self, value_class: Any, own: _OwnFiles, series: Series) -> None:
        self.labels = [series.kind, series.job_name, series.tenant]
        self.in_progress = value_class(
            "gauge",
            c.RUNS_IN_PROGRESS,
            c.RUNS_IN_PROGRESS,
            _SERIES_LABELS,
            self.labels,
            c.HELP[c.RUNS_IN_PROGRESS],
            multiprocess_mode="livesum",
        )
        self.oldest = value_class(
            "gauge",
            c.OLDEST_RUN_START,
            c.OLDEST_RUN_START,
            _SERIES_LABELS,
            self.labels,
            c.HELP[c.OLDEST_RUN_START],
            multiprocess_mode="livemin",
        )
        self.oldest.set(_INF)
        self.oldest_written: float | None = None
        self.resources = own.counter.position(
            mmap_key(
                _base(c.RESOURCES_TOTAL),
                c.RESOURCES_TOTAL,
                _SERIES_LABELS,
                self.labels,
                c.HELP[c.RESOURCES_TOTAL],
            ),
            series.resources,
        )
        # Every state's run counter exists from the first run on (at 0), so the first
        # failure is an increase rate() can see; histograms appear with their first run.
        self.runs = [
            own.counter.position(
                mmap_key(
                    _base(c.RUNS_TOTAL),
                    c.RUNS_TOTAL,
                    _RUN_LABELS,
                    [*self.labels, state],
                    c.HELP[c.RUNS_TOTAL],
                ),
                count,
            )
            for state, count in zip(c.STATES, series.runs, strict=True)
        ]
        self.states: list[_StateKeys | None] = [None] * len(c.STATES)


class MultiprocessSink:
    """Writes each run to this process's mmap files (called under the store lock)."""

    locked = True
    _key = "multiprocess"

    def __init__(self, directory: str) -> None:
        self.value_class = _value_class()
        # Own files first: a directory we cannot write is one setup error, not two.
        self.own = _OwnFiles(directory)
        _register(directory)

    def after_fork(self) -> None:
        """A forked child writes its own files, starting from zero (the store is reset too)."""
        self.own = _OwnFiles(self.own.directory)
        _register(self.own.directory)

    def _files(self, series: Series) -> _SeriesFiles:
        files = series.exporter_cache.get(self._key)
        if files is None:
            files = series.exporter_cache[self._key] = _SeriesFiles(
                self.value_class, self.own, series
            )
        return files  # type: ignore[return-value]

    def _set_oldest(self, files: _SeriesFiles, oldest_start: float | None) -> None:
        # Only write when it changes: a later start never moves the oldest.
        if oldest_start != files.oldest_written:
            files.oldest.set(_INF if oldest_start is None else oldest_start)
            files.oldest_written = oldest_start

    def run_started(self, series: Series, start_wall: float, oldest_start: float | None) -> None:
        files = self._files(series)
        files.in_progress.inc(1)
        self._set_oldest(files, oldest_start)

    def run_finished(
        self,
        series: Series,
        state: int,
        duration: float,
        resources: int | float,
        end_wall: float,
        oldest_start: float | None,
    ) -> None:
        files = self._files(series)
        files.in_progress.inc(-1)
        self._set_oldest(files, oldest_start)
        own = self.own
        keys = files.states[state]
        if keys is None:
            keys = files.states[state] = _StateKeys(own, [*files.labels, c.STATES[state]])
            for position, count in zip(keys.buckets, series.buckets[state], strict=False):
                own.histogram.write(position, count)
        else:
            index = bisect_left(c.DURATION_BUCKETS, duration)
            own.histogram.write(keys.buckets[index], series.buckets[state][index])
        own.histogram.write(keys.sum, series.duration_sums[state])
        own.counter.write(files.runs[state], series.runs[state])
        own.counter.write(files.resources, series.resources)
        own.gauge_max.write(keys.last, end_wall)

    def job_declared(self, kind: str, job_name: str, cadence: Cadence) -> None:
        gauges = self.own.gauge_max
        for name, value in (
            (c.EXPECTED_INTERVAL, cadence.expected_interval),
            (c.GRACE, cadence.grace),
            (c.MAX_RUNTIME, cadence.max_runtime),
        ):
            if value is not None:
                key = mmap_key(name, name, _JOB_LABELS, [kind, job_name], c.HELP[name])
                gauges.position(key, value)


def _register(directory: str) -> None:
    """Let a sweep find this process once it has died (never breaks the process)."""
    try:
        register_process(directory)
    except Exception as exc:
        errors.instrumentation_error("multiprocess register", exc)


class _JobtrackMultiProcessCollector(Collector):
    """``MultiProcessCollector`` minus placeholders (an idle process's oldest start is +Inf),
    after sweeping the serving process's dead children."""

    def __init__(self, path: str | None = None, sweep: bool = True) -> None:
        self._inner = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
        self._path = self._inner._path
        self._sweep = sweep

    def collect(self) -> Iterable[Metric]:
        if self._sweep:
            safe_sweep(self._path)
        for metric in self._inner.collect():  # type: ignore[no-untyped-call]
            if metric.name == c.OLDEST_RUN_START:
                metric.samples = [s for s in metric.samples if not math.isinf(s.value)]
            yield metric


_sink: MultiprocessSink | None = None


def enable(store: Store = STORE) -> MultiprocessSink:
    """Start writing runs of this process to ``PROMETHEUS_MULTIPROC_DIR`` (idempotent)."""
    global _sink
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        raise ValueError(
            f"multiprocess mode needs PROMETHEUS_MULTIPROC_DIR set to an existing directory, "
            f"got {directory!r}"
        )
    if _sink is None:
        _sink = MultiprocessSink(directory)
        store.add_sink(_sink)
        for (kind, job_name), cadence in list(store.cadences.items()):
            _sink.job_declared(kind, job_name, cadence)
        os.register_at_fork(after_in_child=_after_fork_in_child)
    return _sink


def enable_from_environment(store: Store = STORE) -> MultiprocessSink | None:
    """:func:`enable` at import: a directory that is missing or not writable is logged once
    and counted, never raised; the process then serves its own totals (single-process mode)."""
    try:
        return enable(store)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        errors.instrumentation_problem(
            "multiprocess setup",
            f"multiprocess mode is off in this process ({reason}); "
            "its /metrics serves this process's own totals",
        )
        return None


def enabled() -> bool:
    """``True`` once this process writes its runs to the multiprocess directory."""
    return _sink is not None


def _after_fork_in_child() -> None:
    if _sink is not None:
        _fresh_value_lock()
        _sink.after_fork()


def _fresh_value_lock() -> None:
    """Give a forked child a new prometheus_client multiprocess value lock.

    All of prometheus_client's mmap values share one non-reentrant lock. A thread that held it
    at fork (a run starting or finishing in another thread) does not exist in the child, so
    the child's first run would wait for it forever.
    """
    cls = values.ValueClass
    if getattr(cls, "_multiprocess", False):
        for cell in getattr(cls.inc, "__closure__", None) or ():
            if isinstance(cell.cell_contents, _LOCK_TYPE):
                cell.cell_contents = threading.Lock()


def multiprocess_registry(path: str | None = None, *, sweep: bool = True) -> CollectorRegistry:
    """A registry that sums every process's files; serve it from one process.

    With ``sweep`` (default), each collection first finishes the runs of this process's
    children that died with runs in progress (:func:`sweep_dead_processes`).
    """
    registry = CollectorRegistry()
    registry.register(_JobtrackMultiProcessCollector(path, sweep=sweep))
    return registry
