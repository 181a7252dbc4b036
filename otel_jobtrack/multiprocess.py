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

Call ``prometheus_client.multiprocess.mark_process_dead(pid)`` when a worker exits (gunicorn's
``child_exit`` hook), as for any prometheus_client multiprocess setup.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from otel_jobtrack import contract as c
from otel_jobtrack.store import STORE, Cadence, Series, Store

_LE = [floatToGoString(b) for b in c.DURATION_BUCKETS] + ["+Inf"]
_RUN_LABELS = list(c.RUN_LABELS)
_SERIES_LABELS = list(c.SERIES_LABELS)
_JOB_LABELS = list(c.JOB_LABELS)
_INF = math.inf


def _value_class() -> Any:
    # One value class per process: prometheus_client keeps one mmap per file in it, and a
    # second class writing the same file would corrupt it.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()
    return values.ValueClass


def _base(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


class _SeriesFiles:
    """The mmap-backed values of one series, created on first use."""

    __slots__ = ("labels", "in_progress", "oldest", "resources", "states")

    def __init__(self, value_class: Any, series: Series) -> None:
        self.labels = [series.kind, series.job_name, series.tenant]
        self.in_progress = value_class(
            "gauge", c.RUNS_IN_PROGRESS, c.RUNS_IN_PROGRESS, _SERIES_LABELS, self.labels,
            c.HELP[c.RUNS_IN_PROGRESS], multiprocess_mode="livesum",
        )
        self.oldest = value_class(
            "gauge", c.OLDEST_RUN_START, c.OLDEST_RUN_START, _SERIES_LABELS, self.labels,
            c.HELP[c.OLDEST_RUN_START], multiprocess_mode="livemin",
        )
        self.oldest.set(_INF)
        self.resources = value_class(
            "counter", _base(c.RESOURCES_TOTAL), c.RESOURCES_TOTAL, _SERIES_LABELS, self.labels,
            c.HELP[c.RESOURCES_TOTAL],
        )
        self.states: list[tuple[Any, Any, list[Any], Any] | None] = [None] * len(c.STATES)

    def state_values(self, value_class: Any, state: int) -> tuple[Any, Any, list[Any], Any]:
        values_ = self.states[state]
        if values_ is None:
            labels = [*self.labels, c.STATES[state]]
            hist = _base(c.RUN_DURATION)
            values_ = (
                value_class("counter", _base(c.RUNS_TOTAL), c.RUNS_TOTAL, _RUN_LABELS, labels,
                            c.HELP[c.RUNS_TOTAL]),
                value_class("histogram", hist, hist + "_sum", _RUN_LABELS, labels,
                            c.HELP[c.RUN_DURATION]),
                [
                    value_class("histogram", hist, hist + "_bucket", [*_RUN_LABELS, "le"],
                                [*labels, le], c.HELP[c.RUN_DURATION])
                    for le in _LE
                ],
                value_class("gauge", c.LAST_RUN_TIMESTAMP, c.LAST_RUN_TIMESTAMP, _RUN_LABELS,
                            labels, c.HELP[c.LAST_RUN_TIMESTAMP], multiprocess_mode="max"),
            )
            self.states[state] = values_
        return values_


class MultiprocessSink:
    """Writes each run to this process's mmap files (called under the store lock)."""

    locked = True
    _key = "multiprocess"

    def __init__(self) -> None:
        self.value_class = _value_class()

    def _files(self, series: Series) -> _SeriesFiles:
        files = series.exporter_cache.get(self._key)
        if files is None:
            files = series.exporter_cache[self._key] = _SeriesFiles(self.value_class, series)
        return files  # type: ignore[return-value]

    def run_started(self, series: Series, start_wall: float, oldest_start: float | None) -> None:
        files = self._files(series)
        files.in_progress.inc(1)
        files.oldest.set(_INF if oldest_start is None else oldest_start)

    def run_finished(
        self, series: Series, state: int, duration: float, resources: int | float,
        end_wall: float, oldest_start: float | None,
    ) -> None:
        files = self._files(series)
        runs, dsum, buckets, last = files.state_values(self.value_class, state)
        files.in_progress.inc(-1)
        files.oldest.set(_INF if oldest_start is None else oldest_start)
        runs.inc(1)
        dsum.inc(duration)
        buckets[_bucket_index(duration)].inc(1)
        files.resources.inc(resources)
        last.set(end_wall)

    def job_declared(self, kind: str, job_name: str, cadence: Cadence) -> None:
        for name, value in (
            (c.EXPECTED_INTERVAL, cadence.expected_interval),
            (c.GRACE, cadence.grace),
            (c.MAX_RUNTIME, cadence.max_runtime),
        ):
            if value is not None:
                self.value_class(
                    "gauge", name, name, _JOB_LABELS, [kind, job_name], c.HELP[name],
                    multiprocess_mode="max",
                ).set(value)


def _bucket_index(duration: float) -> int:
    from bisect import bisect_left

    return bisect_left(c.DURATION_BUCKETS, duration)


class _JobtrackMultiProcessCollector(Collector):
    """``MultiProcessCollector`` minus placeholders (an idle process's oldest start is +Inf)."""

    def __init__(self, path: str | None = None) -> None:
        self._inner = MultiProcessCollector(None, path=path)

    def collect(self) -> Iterable[Metric]:
        for metric in self._inner.collect():
            if metric.name == c.OLDEST_RUN_START:
                metric.samples = [s for s in metric.samples if not math.isinf(s.value)]
            yield metric


_sink: MultiprocessSink | None = None


def enable(store: Store = STORE) -> MultiprocessSink:
    """Start writing runs of this process to ``PROMETHEUS_MULTIPROC_DIR`` (idempotent)."""
    global _sink
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise ValueError("multiprocess mode needs PROMETHEUS_MULTIPROC_DIR set to a directory")
    if _sink is None:
        _sink = MultiprocessSink()
        store.add_sink(_sink)
        for (kind, job_name), cadence in list(store.cadences.items()):
            _sink.job_declared(kind, job_name, cadence)
    return _sink


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that sums every process's files; serve it from one process."""
    registry = CollectorRegistry()
    registry.register(_JobtrackMultiProcessCollector(path))
    return registry
