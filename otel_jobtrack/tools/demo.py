"""``otel-jobtrack demo``: a simulated cron -> schedule -> resource workload serving /metrics.

It shows every signal the dashboards and alerts look for: a global cron trigger every few
seconds scheduling several tenants, per-tenant schedulers with resource counts, resource and
batch workers, system jobs (tenant ``system``), occasional failures, runs refused by a
concurrency limit, one scheduler that always finds zero resources (``initech``) and one noisy
tenant (``hooli``, about 10x the volume of the others).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from otel_jobtrack import current_run, start_metrics_server, track_run, tracked

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "soylent")
NOISY_TENANT = "hooli"
EMPTY_TENANT = "initech"
FLAKY_TENANT = "umbrella"


class TenantLocked(Exception):
    """The tenant's scheduler is already running elsewhere (a concurrency limit)."""


class Workload:
    """The simulated system: a worker pool, per-tenant locks and a random source."""

    def __init__(self, cron_interval: float, seed: int | None, workers: int = 4) -> None:
        self.cron_interval = cron_interval
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo-worker")
        self.tenant_locks = {t: threading.Lock() for t in TENANTS}
        self.inventory_slot = threading.Semaphore(1)
        self.stopping = threading.Event()
        every = cron_interval
        # Definitions carry the cadence the alerts check: declared once, where the job lives.
        self.billing_cron = tracked(
            "demo.billing.cron.schedule_invoices",
            kind="cron",
            every=every,
            grace=every,
            max_runtime=every * 4,
        )(self._billing_cron)
        self.inventory_cron = tracked(
            "demo.inventory.cron.schedule_sync",
            kind="cron",
            every=every * 2,
            grace=every,
            max_runtime=every * 4,
        )(self._inventory_cron)
        self.cleanup = tracked(
            "demo.maintenance.cleanup_sessions",
            kind="schedule",
            every=every * 3,
            grace=every,
            max_runtime=every * 4,
        )(self._cleanup)
        self.rollup = tracked(
            "demo.reports.rollup",
            kind="batch",
            every=every * 6,
            grace=every * 2,
        )(self._rollup)

    def random(self) -> float:
        with self.rng_lock:
            return self.rng.random()

    def pause(self, low: float, high: float) -> None:
        """Simulated work, scaled to the cron interval so short demos stay lively."""
        scale = min(1.0, self.cron_interval / 5)
        time.sleep((low + (high - low) * self.random()) * scale)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        if not self.stopping.is_set():
            with contextlib.suppress(RuntimeError):  # the pool shut down while stopping
                self.pool.submit(fn, *args)

    # -- billing: cron -> per-tenant schedule -> invoice batches -------------------------

    def _billing_cron(self) -> None:
        self.pause(0.005, 0.03)
        for tenant in TENANTS:
            if self.random() < 0.1:
                continue  # tenant already has work in flight
            self.submit(self.schedule_invoices, tenant)
            current_run().add_resources()

    def schedule_invoices(self, tenant: str) -> None:
        with track_run(
            "demo.billing.tenants.schedule_invoices",
            kind="schedule",
            tenant=tenant,
            limited_exceptions=(TenantLocked,),
            suppress_limited=True,
        ) as run:
            lock = self.tenant_locks[tenant]
            if not lock.acquire(blocking=False):
                raise TenantLocked(tenant)
            try:
                self.pause(0.02, 0.15)
                if tenant == FLAKY_TENANT and self.random() < 0.3:
                    raise ConnectionError("billing API timed out")
                ready = 0 if tenant == EMPTY_TENANT else int(5 + 15 * self.random())
                if tenant == NOISY_TENANT:
                    ready *= 10
                for start in range(0, ready, 25):
                    size = min(25, ready - start)
                    self.submit(self.sync_invoice_batch, tenant, size)
                    run.add_resources(size)
            finally:
                lock.release()

    def sync_invoice_batch(self, tenant: str, size: int) -> None:
        with track_run("demo.billing.sync_invoice_batch", kind="batch", tenant=tenant) as run:
            for _ in range(size):
                self.pause(0.0005, 0.002)
                run.add_resources()
            if self.random() < 0.03:
                raise TimeoutError("invoice provider slow")

    # -- inventory: a cron whose schedulers hit a global concurrency limit ---------------

    def _inventory_cron(self) -> None:
        self.pause(0.005, 0.02)
        tenants = list(TENANTS[:4])
        with self.rng_lock:
            self.rng.shuffle(tenants)
        for tenant in tenants:
            self.submit(self.schedule_sync, tenant)
            current_run().add_resources()

    def schedule_sync(self, tenant: str) -> None:
        with track_run(
            "demo.inventory.tenants.schedule_sync", kind="schedule", tenant=tenant
        ) as run:
            if not self.inventory_slot.acquire(blocking=False):
                run.mark_limited()
                return
            try:
                self.pause(0.05, 0.2)
                items = int(3 + 10 * self.random())
                for _ in range(items):
                    self.submit(self.sync_item, tenant)
                run.add_resources(items)
            finally:
                self.inventory_slot.release()

    def sync_item(self, tenant: str) -> None:
        with track_run("demo.inventory.sync_item", kind="resource", tenant=tenant) as run:
            self.pause(0.001, 0.01)
            run.add_resources()

    # -- system jobs: no tenant ----------------------------------------------------------

    def _cleanup(self) -> None:
        self.pause(0.01, 0.05)
        current_run().add_resources(int(100 * self.random()))

    def _rollup(self) -> None:
        self.pause(0.1, 0.4)
        current_run().add_resources(len(TENANTS))

    # -- the clock -----------------------------------------------------------------------

    def run(self, duration: float | None) -> int:
        """Fire the triggers until ``duration`` elapses or ``stop()``; returns cron ticks."""
        started = time.monotonic()
        tick = 0
        while not self.stopping.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                break
            self.submit(self.billing_cron)
            if tick % 2 == 0:
                self.submit(self.inventory_cron)
            if tick % 3 == 0:
                self.submit(self.cleanup)
            if tick % 6 == 0:
                self.submit(self.rollup)
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
    args = parser.parse_args(argv)
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

    workload = Workload(args.cron_interval, args.seed)

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
