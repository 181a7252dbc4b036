"""Processes that died with runs in progress: those runs are finished as killed failures.

In multiprocess mode a process's runs in progress live in its "live" gauge files
(``jobtrack_runs_in_progress``, summed over live processes; the oldest start, minimum over
live processes). When the process dies, prometheus_client's ``mark_process_dead`` deletes
those files, and a SIGKILLed worker's run vanishes: in progress back to 0, counted nowhere.
Nobody calling it leaves the run in progress forever (``JobTrackRunStuck`` fires until the
directory is wiped). :func:`mark_process_dead` instead finishes each such run:

- ``jobtrack_runs_total{state="failure"}`` +1, so failure rates and alerts see it;
- ``jobtrack_killed_runs_total`` +1 (same labels, no state): how to tell killed runs apart;
- the duration histogram (state ``failure``) gets one observation of "start of the oldest
  run of that series in that process until the death was noticed": exact for the usual one
  run per process, an upper bound for the others;
- ``jobtrack_last_run_timestamp_seconds{state="failure"}`` is the time the death was noticed;
- then the dead process's live gauge files are deleted, as prometheus_client does.

The accounting is written to files of its own (``<type>_<pid>-killed-<digest>-jobtrack.db``),
named after the dead process's live values, so calling it twice (a ``child_exit`` hook and a
sweep), concurrently (one lock file per directory) or again after a crash half-way counts each
run once. Processes register themselves (``jobtrack_proc_<pid>.json``: parent pid and start
time) so that :func:`sweep_dead_processes` can find the dead children of the process serving
``/metrics`` without any hook: a Celery prefork parent, whose pool gives no notice when a
child is SIGKILLed, sweeps at every scrape. The sweep only looks at its own children (or at
the processes it is told about): a directory shared with another pid namespace (a sidecar)
would otherwise see every process as dead.

The files are today's prometheus_client format; the functions are the stable interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from otel_jobtrack._core import contract as c
from otel_jobtrack._core import errors

_LIVE_MODES = ("livesum", "liveall", "livemin", "livemax", "livemostrecent")
_LOCK_NAME = "jobtrack_dead.lock"
_PROC_PREFIX = "jobtrack_proc_"
_LE = [str(float(b)) for b in c.DURATION_BUCKETS] + ["+Inf"]


@dataclass(frozen=True)
class KilledSeries:
    """Runs of one (kind, job_name, tenant) that a dead process left in progress."""

    kind: str
    job_name: str
    tenant: str
    runs: int
    oldest_start: float | None


def _directory(directory: str | None) -> str:
    path = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        raise ValueError(f"needs a multiprocess directory (PROMETHEUS_MULTIPROC_DIR), got {path!r}")
    return path


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One accounting at a time per directory, across processes."""
    fd = os.open(os.path.join(directory, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read(path: str) -> list[tuple[str, float]]:
    try:
        entries = MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        return []
    return [(key, value) for key, value, _, _ in entries]


def _series_key(key: str, name: str) -> tuple[str, str, str] | None:
    try:
        metric, _, labels, _ = json.loads(key)
    except ValueError:
        return None
    if metric != name:
        return None
    try:
        return (labels["kind"], labels["job_name"], labels["tenant"])
    except (KeyError, TypeError):
        return None


def runs_in_progress(pid: int, directory: str | None = None) -> list[KilledSeries]:
    """The runs ``pid`` has in progress according to its live files (nothing is changed)."""
    path = _directory(directory)
    counts: dict[tuple[str, str, str], float] = {}
    for key, value in _read(os.path.join(path, f"gauge_livesum_{pid}.db")):
        labels = _series_key(key, c.RUNS_IN_PROGRESS)
        if labels is not None and value > 0:
            counts[labels] = counts.get(labels, 0) + value
    starts: dict[tuple[str, str, str], float] = {}
    for key, value in _read(os.path.join(path, f"gauge_livemin_{pid}.db")):
        labels = _series_key(key, c.OLDEST_RUN_START)
        if labels is not None and math.isfinite(value):
            starts[labels] = min(value, starts.get(labels, math.inf))
    return [
        KilledSeries(*labels, runs=round(n), oldest_start=starts.get(labels))
        for labels, n in sorted(counts.items())
        if round(n) > 0
    ]


def _write_atomically(path: str, values: list[tuple[str, float]]) -> None:
    tmp = path + ".tmp"  # not *.db: a scrape never reads it half-written
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    table = MmapedDict(tmp)  # type: ignore[no-untyped-call]
    try:
        for key, value in values:
            table.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        table.close()  # type: ignore[no-untyped-call]
    os.replace(tmp, path)


def _account(path: str, pid: int, killed: list[KilledSeries], now: float) -> None:
    """Write the killed runs as finished failures, in files named after what they hold."""
    identity = json.dumps([[k.kind, k.job_name, k.tenant, k.runs, k.oldest_start] for k in killed])
    with contextlib.suppress(FileNotFoundError):
        identity += str(os.stat(os.path.join(path, f"gauge_livesum_{pid}.db")).st_ino)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    suffix = f"{pid}-killed-{digest}-jobtrack.db"
    runs_base = c.RUNS_TOTAL.removesuffix("_total")
    killed_base = c.KILLED_RUNS.removesuffix("_total")
    hist = c.RUN_DURATION
    counters: list[tuple[str, float]] = []
    histogram: list[tuple[str, float]] = []
    gauges: list[tuple[str, float]] = []
    for k in killed:
        labels = [k.kind, k.job_name, k.tenant]
        for state in c.STATES:
            # Every state exists (at 0), as after a first run, so rate() sees the failure.
            counters.append(
                (
                    mmap_key(
                        runs_base,
                        c.RUNS_TOTAL,
                        list(c.RUN_LABELS),
                        [*labels, state],
                        c.HELP[c.RUNS_TOTAL],
                    ),
                    float(k.runs if state == c.FAILURE else 0),
                )
            )
        counters.append(
            (
                mmap_key(
                    killed_base,
                    c.KILLED_RUNS,
                    list(c.SERIES_LABELS),
                    labels,
                    c.HELP[c.KILLED_RUNS],
                ),
                float(k.runs),
            )
        )
        duration = max(0.0, now - k.oldest_start) if k.oldest_start is not None else 0.0
        index = bisect_left(c.DURATION_BUCKETS, duration)
        run_labels = [*labels, c.FAILURE]
        histogram.append(
            (
                mmap_key(hist, hist + "_sum", list(c.RUN_LABELS), run_labels, c.HELP[hist]),
                duration * k.runs,
            )
        )
        for i, le in enumerate(_LE):
            histogram.append(
                (
                    mmap_key(
                        hist,
                        hist + "_bucket",
                        [*c.RUN_LABELS, "le"],
                        [*run_labels, le],
                        c.HELP[hist],
                    ),
                    float(k.runs if i == index else 0),
                )
            )
        gauges.append(
            (
                mmap_key(
                    c.LAST_RUN_TIMESTAMP,
                    c.LAST_RUN_TIMESTAMP,
                    list(c.RUN_LABELS),
                    run_labels,
                    c.HELP[c.LAST_RUN_TIMESTAMP],
                ),
                now,
            )
        )
    _write_atomically(os.path.join(path, f"counter_{suffix}"), counters)
    _write_atomically(os.path.join(path, f"histogram_{suffix}"), histogram)
    _write_atomically(os.path.join(path, f"gauge_max_{suffix}"), gauges)


def _forget(path: str, pid: int) -> None:
    for mode in _LIVE_MODES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, f"gauge_{mode}_{pid}.db"))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, f"{_PROC_PREFIX}{pid}.json"))


def mark_process_dead(pid: int, directory: str | None = None) -> int:
    """Count ``pid``'s runs in progress as killed failures, then drop its live gauges.

    Call it when a process of a multiprocess setup has exited (gunicorn's ``child_exit``
    hook), instead of ``prometheus_client.multiprocess.mark_process_dead``, which it
    includes. Returns the number of runs counted as killed. Safe to call several times and
    from several processes: each run is counted once.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive integer, got {pid!r}")
    path = _directory(directory)
    with _locked(path):
        killed = runs_in_progress(pid, path)
        if killed:
            _account(path, pid, killed, time.time())
        _forget(path, pid)
    return sum(k.runs for k in killed)


# -- processes that register themselves, and the sweep ----------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to detect a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] == b"Z"


def is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie, and the same process when its start is known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _zombie(pid):
        return False
    if start_ticks is not None:
        current = _start_ticks(pid)
        if current is not None and current != start_ticks:
            return False  # the pid now belongs to another process
    return True


def register_process(directory: str, pid: int | None = None) -> None:
    """Record this process (pid, parent, start) so a sweep can tell when it has died.

    A leftover record of the same pid is a dead process's (this one has not registered
    yet): its runs in progress are accounted first, so a reused pid never inherits them.
    """
    pid = os.getpid() if pid is None else pid
    record = os.path.join(directory, f"{_PROC_PREFIX}{pid}.json")
    if os.path.exists(record):
        mark_process_dead(pid, directory)
    data = {"pid": pid, "ppid": os.getppid(), "start": _start_ticks(pid)}
    tmp = f"{record}.{time.time_ns()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, record)


def registered_processes(directory: str | None = None) -> list[dict[str, int | None]]:
    """The processes that registered in ``directory`` and have not been marked dead."""
    path = _directory(directory)
    out = []
    for name in glob.glob(os.path.join(path, f"{_PROC_PREFIX}*.json")):
        try:
            with open(name) as f:
                data = json.load(f)
            out.append(
                {"pid": int(data["pid"]), "ppid": data.get("ppid"), "start": data.get("start")}
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
    return out


def sweep_dead_processes(directory: str | None = None, *, children_of: int | None = None) -> int:
    """Mark every registered process that has died as dead; returns the killed runs counted.

    ``children_of`` (default: this process) limits the sweep to that process's children, the
    only pids a process can be sure share its pid namespace; ``children_of=0`` sweeps every
    registered process (only when the directory belongs to one pid namespace).
    """
    path = _directory(directory)
    parent = os.getpid() if children_of is None else children_of
    killed = 0
    for proc in registered_processes(path):
        pid = proc["pid"]
        if pid is None or pid == os.getpid():
            continue
        if parent and proc["ppid"] != parent:
            continue
        if not is_alive(pid, proc["start"]):
            killed += mark_process_dead(pid, path)
    return killed


def safe_sweep(directory: str | None = None, *, children_of: int | None = None) -> int:
    """:func:`sweep_dead_processes` that logs and counts problems instead of raising."""
    try:
        return sweep_dead_processes(directory, children_of=children_of)
    except Exception as exc:
        errors.instrumentation_error("dead process sweep", exc)
        return 0
