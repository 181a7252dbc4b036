"""``otel-jobtrack demo``: a simulated cron -> schedule -> resource workload serving /metrics.

It shows every signal the dashboards and alerts look for: a global cron trigger every few
seconds scheduling several tenants, per-tenant schedulers with resource counts, resource and
batch workers, system jobs (tenant ``system``), occasional failures, runs refused by a
concurrency limit, one scheduler that always finds zero resources (``initech``) and one noisy
tenant (``hooli``, about 10x the volume of the others).

``--fault`` injects the quiet failures the status command, the report and the alerts must
notice, at a chosen second of the run (the defaults inject none):

- ``stop:JOB@T``       the clock stops triggering JOB (a cron, cleanup or rollup): overdue;
- ``fail:JOB=SHARE@T`` that share of JOB's runs raise: failing;
- ``slow:JOB=FACTOR@T`` JOB's simulated work takes FACTOR times longer: duration drift;
- ``hang:JOB@T``       JOB's next run never finishes (until the demo stops): stuck;
- ``surge:TENANT=FACTOR@T`` the tenant has FACTOR times more invoices: unusual volume.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

from otel_jobtrack import current_run, start_metrics_server, track_run, tracked

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "soylent")
NOISY_TENANT = "hooli"
EMPTY_TENANT = "initech"
FLAKY_TENANT = "umbrella"


BILLING_CRON = "demo.billing.cron.schedule_invoices"
BILLING_SCHEDULE = "demo.billing.tenants.schedule_invoices"
BILLING_BATCH = "demo.billing.sync_invoice_batch"
INVENTORY_CRON = "demo.inventory.cron.schedule_sync"
INVENTORY_SCHEDULE = "demo.inventory.tenants.schedule_sync"
INVENTORY_ITEM = "demo.inventory.sync_item"
CLEANUP = "demo.maintenance.cleanup_sessions"
ROLLUP = "demo.reports.rollup"
CLOCK_JOBS = (BILLING_CRON, INVENTORY_CRON, CLEANUP, ROLLUP)
"""Jobs the demo's clock triggers (the others are enqueued by them)."""
JOBS = (*CLOCK_JOBS, BILLING_SCHEDULE, BILLING_BATCH, INVENTORY_SCHEDULE, INVENTORY_ITEM)
FAULT_KINDS = ("stop", "fail", "slow", "hang", "surge")
_FAULT_RE = re.compile(r"^(\w+):([^=@]+)(?:=([0-9.]+))?(?:@([0-9.]+))?$")


class TenantLocked(Exception):
    """The tenant's scheduler is already running elsewhere (a concurrency limit)."""


class InjectedFault(Exception):
    """A failure asked for with ``--fault fail:...``."""


@dataclass(frozen=True)
class Fault:
    """One injected problem: what, on which job (or tenant), how much, from which second."""

    kind: str
    target: str
    value: float = 1.0
    after: float = 0.0


def parse_fault(spec: str) -> Fault:
    """``KIND:TARGET[=VALUE][@SECONDS]``, checked against the demo's jobs and tenants."""
    match = _FAULT_RE.match(spec.strip())
    if not match:
        raise ValueError(f"--fault {spec!r}: expected KIND:TARGET[=VALUE][@SECONDS]")
    kind, target, value, after = match.groups()
    if kind not in FAULT_KINDS:
        raise ValueError(f"--fault {spec!r}: unknown kind {kind!r} ({', '.join(FAULT_KINDS)})")
    names = TENANTS if kind == "surge" else CLOCK_JOBS if kind == "stop" else JOBS
    if target not in names:
        raise ValueError(f"--fault {spec!r}: {target!r} is not one of {', '.join(names)}")
    needs_value = kind in ("fail", "slow", "surge")
    if needs_value and value is None:
        raise ValueError(f"--fault {spec!r}: {kind} needs =VALUE")
    if not needs_value and value is not None:
        raise ValueError(f"--fault {spec!r}: {kind} takes no =VALUE")
    number = float(value) if value is not None else 1.0
    if kind == "fail" and not 0 < number <= 1:
        raise ValueError(f"--fault {spec!r}: a failure share is in (0, 1]")
    if kind in ("slow", "surge") and number <= 0:
        raise ValueError(f"--fault {spec!r}: the factor must be positive")
    return Fault(kind, target, number, float(after or 0.0))


class Faults:
    """The faults in force, by elapsed seconds since the workload started."""

    def __init__(self, faults: Sequence[Fault] = ()) -> None:
        self.faults = tuple(faults)
        self.started = time.monotonic()
        self._hung: set[str] = set()
        self._lock = threading.Lock()

    def _active(self, kind: str, target: str) -> Fault | None:
        elapsed = time.monotonic() - self.started
        for fault in self.faults:
            if fault.kind == kind and fault.target == target and elapsed >= fault.after:
                return fault
        return None

    def stopped(self, job: str) -> bool:
        return self._active("stop", job) is not None

    def factor(self, kind: str, target: str) -> float:
        fault = self._active(kind, target)
        return fault.value if fault else 1.0

    def should_fail(self, job: str, draw: float) -> bool:
        fault = self._active("fail", job)
        return fault is not None and draw < fault.value

    def take_hang(self, job: str) -> bool:
        """True once per ``hang`` fault: the caller's run then never finishes."""
        if self._active("hang", job) is None:
            return False
        with self._lock:
            if job in self._hung:
                return False
            self._hung.add(job)
            return True


class Workload:
    """The simulated system: a worker pool, per-tenant locks and a random source."""

    def __init__(
        self,
        cron_interval: float,
        seed: int | None,
        workers: int = 4,
        faults: Sequence[Fault] = (),
    ) -> None:
        self.cron_interval = cron_interval
        self.faults = Faults(faults)
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        # A hung run holds a worker for good: give it one of its own.
        hangs = sum(f.kind == "hang" for f in self.faults.faults)
        self.pool = ThreadPoolExecutor(
            max_workers=workers + hangs, thread_name_prefix="demo-worker"
        )
        self.tenant_locks = {t: threading.Lock() for t in TENANTS}
        self.inventory_slot = threading.Semaphore(1)
        self.stopping = threading.Event()
        every = cron_interval
        # Definitions carry the cadence the alerts check: declared once, where the job lives.
        self.billing_cron = tracked(
            BILLING_CRON,
            kind="cron",
            every=every,
            grace=every,
            max_runtime=every * 4,
        )(self._billing_cron)
        self.inventory_cron = tracked(
            INVENTORY_CRON,
            kind="cron",
            every=every * 2,
            grace=every,
            max_runtime=every * 4,
        )(self._inventory_cron)
        self.cleanup = tracked(
            CLEANUP,
            kind="schedule",
            every=every * 3,
            grace=every,
            max_runtime=every * 4,
        )(self._cleanup)
        self.rollup = tracked(
            ROLLUP,
            kind="batch",
            every=every * 6,
            grace=every * 2,
        )(self._rollup)

    def random(self) -> float:
        with self.rng_lock:
            return self.rng.random()

    def pause(self, low: float, high: float, job: str = "") -> None:
        """Simulated work, scaled to the cron interval so short demos stay lively."""
        scale = min(1.0, self.cron_interval / 5) * self.faults.factor("slow", job)
        time.sleep((low + (high - low) * self.random()) * scale)

    def inject(self, job: str) -> None:
        """The ``fail`` and ``hang`` faults, called inside the job's tracked run."""
        if self.faults.take_hang(job):
            self.stopping.wait()
        if self.faults.faults and self.faults.should_fail(job, self.random()):
            raise InjectedFault(f"{job}: injected failure")

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        if not self.stopping.is_set():
            with contextlib.suppress(RuntimeError):  # the pool shut down while stopping
                self.pool.submit(fn, *args)

    # -- billing: cron -> per-tenant schedule -> invoice batches -------------------------

    def _billing_cron(self) -> None:
        self.inject(BILLING_CRON)
        self.pause(0.005, 0.03, BILLING_CRON)
        for tenant in TENANTS:
            if self.random() < 0.1:
                continue  # tenant already has work in flight
            self.submit(self.schedule_invoices, tenant)
            current_run().add_resources()

    def schedule_invoices(self, tenant: str) -> None:
        with track_run(
            BILLING_SCHEDULE,
            kind="schedule",
            tenant=tenant,
            limited_exceptions=(TenantLocked,),
            suppress_limited=True,
        ) as run:
            lock = self.tenant_locks[tenant]
            if not lock.acquire(blocking=False):
                raise TenantLocked(tenant)
            try:
                self.inject(BILLING_SCHEDULE)
                self.pause(0.02, 0.15, BILLING_SCHEDULE)
                if tenant == FLAKY_TENANT and self.random() < 0.3:
                    raise ConnectionError("billing API timed out")
                ready = 0 if tenant == EMPTY_TENANT else int(5 + 15 * self.random())
                if tenant == NOISY_TENANT:
                    ready *= 10
                ready = round(ready * self.faults.factor("surge", tenant))
                for start in range(0, ready, 25):
                    size = min(25, ready - start)
                    self.submit(self.sync_invoice_batch, tenant, size)
                    run.add_resources(size)
            finally:
                lock.release()

    def sync_invoice_batch(self, tenant: str, size: int) -> None:
        with track_run(BILLING_BATCH, kind="batch", tenant=tenant) as run:
            self.inject(BILLING_BATCH)
            for _ in range(size):
                self.pause(0.0005, 0.002, BILLING_BATCH)
                run.add_resources()
            if self.random() < 0.03:
                raise TimeoutError("invoice provider slow")

    # -- inventory: a cron whose schedulers hit a global concurrency limit ---------------

    def _inventory_cron(self) -> None:
        self.inject(INVENTORY_CRON)
        self.pause(0.005, 0.02, INVENTORY_CRON)
        tenants = list(TENANTS[:4])
        with self.rng_lock:
            self.rng.shuffle(tenants)
        for tenant in tenants:
            self.submit(self.schedule_sync, tenant)
            current_run().add_resources()

    def schedule_sync(self, tenant: str) -> None:
        with track_run(INVENTORY_SCHEDULE, kind="schedule", tenant=tenant) as run:
            if not self.inventory_slot.acquire(blocking=False):
                run.mark_limited()
                return
            try:
                self.inject(INVENTORY_SCHEDULE)
                self.pause(0.05, 0.2, INVENTORY_SCHEDULE)
                items = int(3 + 10 * self.random())
                for _ in range(items):
                    self.submit(self.sync_item, tenant)
                run.add_resources(items)
            finally:
                self.inventory_slot.release()

    def sync_item(self, tenant: str) -> None:
        with track_run(INVENTORY_ITEM, kind="resource", tenant=tenant) as run:
            self.inject(INVENTORY_ITEM)
            self.pause(0.001, 0.01, INVENTORY_ITEM)
            run.add_resources()

    # -- system jobs: no tenant ----------------------------------------------------------

    def _cleanup(self) -> None:
        self.inject(CLEANUP)
        self.pause(0.01, 0.05, CLEANUP)
        current_run().add_resources(int(100 * self.random()))

    def _rollup(self) -> None:
        self.inject(ROLLUP)
        self.pause(0.1, 0.4, ROLLUP)
        current_run().add_resources(len(TENANTS))

    # -- the clock -----------------------------------------------------------------------

    def run(self, duration: float | None) -> int:
        """Fire the triggers until ``duration`` elapses or ``stop()``; returns cron ticks."""
        started = time.monotonic()
        tick = 0
        while not self.stopping.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                break
            for every, job, fn in (
                (1, BILLING_CRON, self.billing_cron),
                (2, INVENTORY_CRON, self.inventory_cron),
                (3, CLEANUP, self.cleanup),
                (6, ROLLUP, self.rollup),
            ):
                if tick % every == 0 and not self.faults.stopped(job):
                    self.submit(fn)
            tick += 1
            next_tick = started + tick * self.cron_interval
            self.stopping.wait(max(0.0, next_tick - time.monotonic()))
        return tick

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack demo",
        description="Run a simulated recurring-job workload and serve its metrics.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind (default: $OTEL_EXPORTER_PROMETHEUS_HOST or localhost)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to serve /metrics on (default: $OTEL_EXPORTER_PROMETHEUS_PORT or 9464)",
    )
    parser.add_argument(
        "--cron-interval",
        type=float,
        default=5.0,
        help="seconds between two global cron triggers (default: 5)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for repeatable runs")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET[=VALUE][@SECONDS]",
        help="inject a problem after SECONDS: stop:JOB, fail:JOB=SHARE, slow:JOB=FACTOR, "
        "hang:JOB, surge:TENANT=FACTOR (repeatable; e.g. fail:demo.reports.rollup=1@60)",
    )
    args = parser.parse_args(argv)
    try:
        faults = [parse_fault(spec) for spec in args.fault]
    except ValueError as e:
        parser.error(str(e))
    if args.cron_interval <= 0:
        parser.error("--cron-interval must be positive")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")

    server, _thread = start_metrics_server(port=args.port, addr=args.host)
    bound_host, bound_port = server.server_address[:2]
    print(
        f"otel-jobtrack demo: serving metrics at http://{bound_host}:{bound_port}/metrics",
        flush=True,
    )
    print(
        f"cron trigger every {args.cron_interval:g}s; "
        + (f"stopping after {args.duration:g}s" if args.duration else "Ctrl-C to stop"),
        flush=True,
    )

    workload = Workload(args.cron_interval, args.seed, faults=faults)
    for fault in faults:
        value = f"={fault.value:g}" if fault.kind in ("fail", "slow", "surge") else ""
        print(f"fault after {fault.after:g}s: {fault.kind} {fault.target}{value}", flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        workload.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        ticks = workload.run(args.duration)
    finally:
        workload.close()
        server.shutdown()
    print(f"otel-jobtrack demo: stopped after {ticks} cron ticks", flush=True)
    return 0
