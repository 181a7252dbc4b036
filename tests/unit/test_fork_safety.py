"""Forked workers (prefork pools, gunicorn, Celery): every run counted once, no deadlock.

Each scenario runs in a fresh interpreter (its own session, killed as a group if it hangs),
because forking the test process itself would copy pytest's state and threads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from otel_jobtrack.exporters.prometheus.multiprocess import multiprocess_registry
from tests.backends import VictoriaMetricsServer, free_port
from tests.helpers import value

TIMEOUT = 60.0

# Shared by the scripts: wait for a forked child, but never forever.
WAIT_CHILD = """
import os, signal, time
def wait_child(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"
"""


def run_script(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a new interpreter and session; it prints one JSON object last."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT_CHILD + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and any child it forked
        out, err = proc.communicate()
        pytest.fail(f"fork scenario hung for {TIMEOUT}s\n{out}\n{err}")
    assert proc.returncode == 0, f"{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


PREFORK_POOL = """
import json, multiprocessing, sys, threading
from otel_jobtrack import track_run

n = int(sys.argv[1])

def runs(count):
    for i in range(count):
        with track_run("fork.job", kind="batch", tenant="t") as run:
            run.add_resources(2)
            if i % 3 == 0:
                run.mark_limited()

runs(5)
# Another thread keeps running jobs while the workers are forked.
stop, busy = threading.Event(), [0]
def spin():
    while not stop.is_set():
        with track_run("fork.busy", kind="resource"):
            pass
        busy[0] += 1
spinner = threading.Thread(target=spin)
spinner.start()
ctx = multiprocessing.get_context("fork")
workers = [ctx.Process(target=runs, args=(n,)) for _ in range(3)]
for w in workers:
    w.start()
for w in workers:
    w.join(30)
stop.set()
spinner.join()
print(json.dumps({"busy": busy[0], "exitcodes": [w.exitcode for w in workers]}))
"""


def test_multiprocess_mode_counts_parent_and_forked_workers_once(tmp_path: Path) -> None:
    n = 7
    result = run_script(PREFORK_POOL, str(n), env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert result["exitcodes"] == [0, 0, 0]
    text = generate_latest(multiprocess_registry(str(tmp_path))).decode()
    job = {"job_name": "fork.job", "tenant": "t"}
    expected_limited = 2 + 3 * len(range(0, n, 3))  # i % 3 == 0 in 5 runs, then in n runs
    expected = 5 + 3 * n
    assert value("jobtrack_runs_total", text, state="limited", **job) == expected_limited
    assert value("jobtrack_runs_total", text, state="success", **job) == expected - expected_limited
    assert value("jobtrack_resources_total", text, **job) == 2 * expected
    assert value("jobtrack_run_duration_seconds_count", text, state="success", **job) == (
        expected - expected_limited
    )
    assert value("jobtrack_runs_in_progress", text, **job) == 0
    # The parent's busy thread ran only in the parent: none of its runs came back from a child.
    busy = value("jobtrack_runs_total", text, job_name="fork.busy", state="success")
    assert busy == result["busy"] > 0


LOCKED_AT_FORK = """
import json, os, signal, sys, threading, traceback
from prometheus_client import generate_latest, values
from otel_jobtrack import configure, track_run
from otel_jobtrack.exporters import pipeline as config
from otel_jobtrack.exporters.prometheus.app import exposition_registry
from otel_jobtrack._core.store import STORE

endpoint = os.environ.get("FORK_TEST_OTLP_ENDPOINT")
if endpoint:  # nothing listens there: only the child's pipeline matters, not delivery
    configure("otlp", endpoint=endpoint, export_interval=3600, exit_timeout=2)
    parent_provider = config.current().meter_provider
for _ in range(5):
    with track_run("fork.job", kind="batch", tenant="t"):
        pass
# What a thread in the middle of starting or finishing a run holds: the store lock and, in
# multiprocess mode, prometheus_client's value lock. Held here on purpose across the fork.
locks = [STORE.lock]
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    lock_type = type(threading.Lock())
    cells = values.ValueClass.inc.__closure__ or ()
    locks += [c.cell_contents for c in cells if isinstance(c.cell_contents, lock_type)]
in_run, held, release = threading.Event(), threading.Event(), threading.Event()

def long_run():
    with track_run("fork.long", kind="resource", tenant="t"):
        in_run.set()
        release.wait()

def hold():
    for lock in locks:
        lock.acquire()
    held.set()
    release.wait()
    for lock in reversed(locks):
        lock.release()

threads = [threading.Thread(target=long_run), threading.Thread(target=hold)]
threads[0].start()
in_run.wait()
threads[1].start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGALRM, lambda *a: os._exit(99))  # deadlocked
    signal.alarm(10)
    code = 1
    try:
        with track_run("fork.job", kind="batch", tenant="t"):
            pass
        with open(sys.argv[1], "wb") as out:
            out.write(generate_latest(exposition_registry()))
        if endpoint:  # the child records through a provider of its own
            assert config.current().meter_provider is not parent_provider
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)
release.set()
for t in threads:
    t.join()
print(json.dumps({"child": wait_child(pid), "locks": len(locks)}))
"""


@pytest.mark.parametrize("otlp", [False, True], ids=["prometheus", "prometheus+otlp"])
def test_fork_while_another_thread_holds_the_locks(tmp_path: Path, otlp: bool) -> None:
    child_view = tmp_path / "child.txt"
    env = {"FORK_TEST_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/metrics"} if otlp else {}
    result = run_script(LOCKED_AT_FORK, str(child_view), env=env)
    assert result == {"child": 0, "locks": 1}
    text = child_view.read_text()
    # The child's /metrics shows its own run only: the parent's five are not re-exported,
    # and the parent's run in progress (in a thread the child does not have) is not its own.
    assert value("jobtrack_runs_total", text, job_name="fork.job", state="success") == 1
    assert value("jobtrack_runs_in_progress", text, job_name="fork.long") is None
    assert value("jobtrack_oldest_run_start_timestamp_seconds", text) is None


def test_fork_while_another_thread_holds_the_locks_in_multiprocess_mode(tmp_path: Path) -> None:
    files = tmp_path / "mp"
    files.mkdir()
    result = run_script(
        LOCKED_AT_FORK, str(tmp_path / "child.txt"), env={"PROMETHEUS_MULTIPROC_DIR": str(files)}
    )
    assert result == {"child": 0, "locks": 2}
    text = generate_latest(multiprocess_registry(str(files))).decode()
    assert value("jobtrack_runs_total", text, job_name="fork.job", state="success") == 6
    assert value("jobtrack_runs_total", text, job_name="fork.long", state="success") == 1
    assert value("jobtrack_runs_in_progress", text, job_name="fork.long") == 0


OTLP_FORK = """
import json, os, sys, time, urllib.parse, urllib.request
from otel_jobtrack import configure, track_run
from otel_jobtrack.exporters import pipeline as config

otlp_url, query_url = sys.argv[1], sys.argv[2]
exporters = configure(
    "otlp", endpoint=otlp_url, export_interval=0.5, service_name="fork-test", exit_timeout=5
)
for _ in range(5):
    with track_run("fork.job", kind="batch", tenant="t"):
        pass
parent_flushed = exporters.flush(10)

def instances():
    query = urllib.parse.urlencode(
        {"query": 'jobtrack_runs_total{job_name="fork.job",state="success"}'}
    )
    urllib.request.urlopen(query_url.rsplit("/api/", 1)[0] + "/internal/force_flush").read()
    with urllib.request.urlopen(f"{query_url}?{query}", timeout=5) as resp:
        return len(json.load(resp)["data"]["result"])

pid = os.fork()
if pid == 0:
    code = 3
    try:
        with track_run("fork.job", kind="batch", tenant="t"):
            pass
        # No flush: the child's own export thread must deliver its run.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and code:
            if instances() >= 2:
                code = 0
            time.sleep(0.2)
    finally:
        os._exit(code)
print(json.dumps({"parent_flushed": parent_flushed, "child": wait_child(pid, 30)}))
"""


@pytest.mark.backend
def test_otlp_counts_a_forked_child_once(victoria_metrics: VictoriaMetricsServer) -> None:
    vm = victoria_metrics
    result = run_script(OTLP_FORK, vm.otlp_url, f"{vm.url}/api/v1/query")
    assert result == {"parent_flushed": True, "child": 0}
    by_instance = vm.wait_for(
        'jobtrack_runs_total{job_name="fork.job",state="success"}',
        lambda r: len(r) == 2,
        timeout=15,
    )
    counts = sorted(float(r["value"][1]) for r in by_instance)
    # Parent 5 and child 1 under two instance ids; not 5 and 6 (the child's SDK copy).
    assert counts == [1.0, 5.0]
    assert len({r["metric"]["service_instance_id"] for r in by_instance}) == 2
    assert vm.query_value('sum(jobtrack_run_duration_seconds_count{job_name="fork.job"})') == 6
