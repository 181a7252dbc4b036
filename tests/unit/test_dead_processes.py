"""Processes killed with runs in progress: those runs finish as killed failures, exactly once.

Real worker processes write the multiprocess files, are SIGKILLed mid-run, and the function
API (``mark_process_dead``, ``sweep_dead_processes``, the sweeping registry) is checked on
what a scrape shows. These tests guard the API whatever the file format becomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from otel_jobtrack._core import contract as c
from otel_jobtrack.exporters.prometheus import dead_processes
from otel_jobtrack.exporters.prometheus.multiprocess import (
    mark_process_dead,
    multiprocess_registry,
    sweep_dead_processes,
)
from tests.backends import REPO_ROOT
from tests.helpers import value

WORKER = textwrap.dedent(
    """
    import sys, threading, time
    from otel_jobtrack import track_run
    done, hanging = int(sys.argv[1]), sys.argv[2].split(",") if sys.argv[2] else []
    for n in range(done):
        with track_run("dead.job", kind="resource", tenant="acme") as run:
            run.add_resources(2)
    started = []
    def hang(tenant):
        with track_run("dead.job", kind="resource", tenant=tenant):
            started.append(tenant)
            time.sleep(3600)
    for tenant in hanging:
        threading.Thread(target=hang, args=(tenant,), daemon=True).start()
    while len(started) < len(hanging):
        time.sleep(0.01)
    print("ready", flush=True)
    time.sleep(3600)
    """
)


class Worker:
    """A real process writing the multiprocess directory; a child of the test process."""

    def __init__(self, directory: Path, done: int = 0, hanging: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(PROMETHEUS_MULTIPROC_DIR=str(directory), PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(done), ",".join(hanging)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "ready\n", line
        self.started = time.time()
        self.pid = self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.stop()


def start(made: list[Worker], directory: Path, done: int = 0, *hanging: str) -> Worker:
    worker = Worker(directory, done, hanging)
    made.append(worker)
    return worker


def scrape(directory: Path) -> str:
    return generate_latest(multiprocess_registry(str(directory), sweep=False)).decode()


def totals(directory: Path, **labels: str) -> dict[str, float | None]:
    text = scrape(directory)
    return {
        "failure": value(c.RUNS_TOTAL, text, state="failure", **labels),
        "success": value(c.RUNS_TOTAL, text, state="success", **labels),
        "killed": value(c.KILLED_RUNS, text, **labels),
        "in_progress": value(c.RUNS_IN_PROGRESS, text, **labels),
        "count": value(c.RUN_DURATION + "_count", text, state="failure", **labels),
        "oldest": value(c.OLDEST_RUN_START, text, **labels),
    }


def test_a_killed_run_is_a_failure_and_no_longer_in_progress(
    tmp_path: Path, workers: list[Worker]
) -> None:
    worker = start(workers, tmp_path, 3, "acme")
    before = totals(tmp_path, tenant="acme")
    assert before["in_progress"] == 1 and before["oldest"] is not None
    assert before["success"] == 3 and before["failure"] == 0 and before["killed"] is None
    time.sleep(0.3)
    worker.kill()
    killed_at = time.time()

    assert mark_process_dead(worker.pid, str(tmp_path)) == 1
    after = totals(tmp_path, tenant="acme")
    assert after["success"] == 3 and after["failure"] == 1 and after["killed"] == 1
    assert after["count"] == 1 and after["oldest"] is None
    assert not after["in_progress"]
    text = scrape(tmp_path)
    duration = value(c.RUN_DURATION + "_sum", text, state="failure")
    assert duration is not None and 0.3 <= duration <= time.time() - worker.started + 0.01
    last = value(c.LAST_RUN_TIMESTAMP, text, state="failure")
    assert last is not None and killed_at - 1 <= last <= time.time()
    # Resources of the finished runs stay; the killed run adds none.
    assert value(c.RESOURCES_TOTAL, text, tenant="acme") == 6

    # Again (a hook and a sweep both noticing): nothing more is counted.
    assert mark_process_dead(worker.pid, str(tmp_path)) == 0
    assert totals(tmp_path, tenant="acme") == after


def test_several_runs_and_tenants_of_one_process(tmp_path: Path, workers: list[Worker]) -> None:
    worker = start(workers, tmp_path, 0, "acme", "acme", "beta")
    other = start(workers, tmp_path, 1, "acme")
    worker.kill()
    assert mark_process_dead(worker.pid, str(tmp_path)) == 3
    acme, beta = totals(tmp_path, tenant="acme"), totals(tmp_path, tenant="beta")
    assert (acme["killed"], acme["failure"], acme["count"]) == (2, 2, 2)
    assert (beta["killed"], beta["failure"], beta["count"]) == (1, 1, 1)
    # The other process still runs its own run, untouched.
    assert acme["in_progress"] == 1 and acme["success"] == 1 and acme["oldest"] is not None
    other.kill()
    assert mark_process_dead(other.pid, str(tmp_path)) == 1
    assert totals(tmp_path, tenant="acme")["killed"] == 3


def test_an_idle_process_that_exits_counts_nothing(tmp_path: Path, workers: list[Worker]) -> None:
    worker = start(workers, tmp_path, 4)
    worker.kill()
    assert mark_process_dead(worker.pid, str(tmp_path)) == 0
    result = totals(tmp_path)
    assert (result["success"], result["failure"], result["killed"]) == (4, 0, None)
    assert list(tmp_path.glob(f"*_{worker.pid}.db")) == []  # live gauges gone
    assert list(tmp_path.glob(f"jobtrack_proc_{worker.pid}.json")) == []


def test_concurrent_callers_count_each_run_once(tmp_path: Path, workers: list[Worker]) -> None:
    worker = start(workers, tmp_path, 0, "acme", "beta")
    worker.kill()
    code = (
        "import sys\n"
        "from otel_jobtrack.exporters.prometheus.multiprocess import mark_process_dead\n"
        "print(mark_process_dead(int(sys.argv[1]), sys.argv[2]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(worker.pid), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    counted = [int(p.communicate(timeout=60)[0]) for p in racers]
    assert sorted(counted) == [0, 0, 0, 0, 0, 2]
    assert totals(tmp_path)["killed"] == 2 and totals(tmp_path)["failure"] == 2


@pytest.mark.parametrize("crash_at", ["second file", "forget"])
def test_a_crash_half_way_neither_loses_nor_double_counts(
    tmp_path: Path, workers: list[Worker], monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    worker = start(workers, tmp_path, 0, "acme")
    worker.kill()
    real_write, real_forget = dead_processes._write_atomically, dead_processes._forget
    writes: list[str] = []

    class Crash(BaseException):
        pass

    def write(path: str, values: list[tuple[str, float]]) -> None:
        writes.append(path)
        if crash_at == "second file" and len(writes) == 2:
            raise Crash
        real_write(path, values)

    def forget(path: str, pid: int) -> None:
        raise Crash

    monkeypatch.setattr(dead_processes, "_write_atomically", write)
    if crash_at == "forget":
        monkeypatch.setattr(dead_processes, "_forget", forget)
    with pytest.raises(Crash):
        mark_process_dead(worker.pid, str(tmp_path))
    monkeypatch.setattr(dead_processes, "_write_atomically", real_write)
    monkeypatch.setattr(dead_processes, "_forget", real_forget)

    assert mark_process_dead(worker.pid, str(tmp_path)) == 1
    result = totals(tmp_path, tenant="acme")
    assert (result["killed"], result["failure"], result["count"]) == (1, 1, 1)
    assert not result["in_progress"]
    assert list(tmp_path.glob("*.tmp")) == []


def test_the_sweep_finds_dead_children_only(tmp_path: Path, workers: list[Worker]) -> None:
    dead = start(workers, tmp_path, 0, "acme")
    alive = start(workers, tmp_path, 0, "beta")
    dead.kill()
    # A registered process that is not a child of the sweeping one: left alone by default
    # (it could live in another pid namespace that shares the directory).
    stranger = 2**22 + 12345
    (tmp_path / f"jobtrack_proc_{stranger}.json").write_text(
        json.dumps({"pid": stranger, "ppid": 1, "start": None})
    )
    assert sweep_dead_processes(str(tmp_path)) == 1
    assert totals(tmp_path, tenant="acme")["killed"] == 1
    assert totals(tmp_path, tenant="beta")["in_progress"] == 1
    assert (tmp_path / f"jobtrack_proc_{stranger}.json").exists()
    assert sweep_dead_processes(str(tmp_path), children_of=0) == 0  # nothing in progress
    assert not (tmp_path / f"jobtrack_proc_{stranger}.json").exists()
    alive.kill()
    assert sweep_dead_processes(str(tmp_path)) == 1


def test_every_scrape_sweeps_the_serving_process_children(
    tmp_path: Path, workers: list[Worker]
) -> None:
    worker = start(workers, tmp_path, 2, "acme")
    registry = multiprocess_registry(str(tmp_path))
    assert value(c.RUNS_IN_PROGRESS, generate_latest(registry).decode()) == 1
    worker.kill()
    text = generate_latest(registry).decode()
    assert value(c.KILLED_RUNS, text) == 1 and value(c.RUNS_TOTAL, text, state="failure") == 1
    assert not value(c.RUNS_IN_PROGRESS, text)
    assert generate_latest(registry).decode() == text  # counted once


def test_a_zombie_is_dead(tmp_path: Path, workers: list[Worker]) -> None:
    worker = start(workers, tmp_path, 0, "acme")
    os.kill(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not dead_processes._zombie(worker.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not dead_processes.is_alive(worker.pid)  # not reaped yet, and still dead
    assert sweep_dead_processes(str(tmp_path)) == 1
    worker.proc.wait(timeout=10)


def test_a_reused_pid_is_recognised(tmp_path: Path, workers: list[Worker]) -> None:
    worker = start(workers, tmp_path, 0, "acme")
    record = json.loads((tmp_path / f"jobtrack_proc_{worker.pid}.json").read_text())
    assert record["ppid"] == os.getpid() and dead_processes.is_alive(worker.pid, record["start"])
    assert not dead_processes.is_alive(worker.pid, record["start"] + 1)
    # The pid's next owner registers while the dead owner's record is still there: the dead
    # owner's runs are finished first, never inherited.
    worker.kill()
    dead_processes.register_process(str(tmp_path), pid=worker.pid)
    assert totals(tmp_path, tenant="acme")["killed"] == 1
    assert not totals(tmp_path, tenant="acme")["in_progress"]


def test_prometheus_client_live_gauges_of_the_dead_go_too(tmp_path: Path) -> None:
    # What prometheus_client's own mark_process_dead does is included.
    for mode in ("livesum", "liveall", "livemax", "max"):
        table = MmapedDict(str(tmp_path / f"gauge_{mode}_4242.db"))
        table.write_value(mmap_key("app_gauge", "app_gauge", [], [], "help"), 1.0, 0.0)
        table.close()
    assert mark_process_dead(4242, str(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["gauge_max_4242.db"]


def test_bad_arguments_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match="pid must be a positive integer"):
        mark_process_dead(0, str(tmp_path))
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(123)
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        sweep_dead_processes(str(tmp_path / "missing"))
    assert dead_processes.safe_sweep(str(tmp_path / "missing")) == 0


def test_lock_is_exclusive_between_threads(tmp_path: Path) -> None:
    inside: list[int] = []
    overlap: list[bool] = []

    def hold() -> None:
        with dead_processes._locked(str(tmp_path)):
            inside.append(1)
            overlap.append(len(inside) > 1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [False] * 4
