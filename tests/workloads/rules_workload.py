"""A workload for the alert rules' end-to-end test: healthy and unhealthy jobs on short cycles.

Run as a script: ``python tests/workloads/rules_workload.py --port N --role main|doomed|paging
--switch-at UNIX_TIME [--prefix e2e] [--otlp-endpoint URL] [--control-dir DIR]``. It serves
``/metrics`` on 127.0.0.1 (and with ``--otlp-endpoint`` also exports over OTLP every second)
and runs every job in its own thread, several times a second. At ``--switch-at`` the
"anomaly" jobs change behaviour (a tenant's volume jumps, a job slows down, a cron runs less
often...), so that the rules have a few seconds of normal history to compare with. Job names
are ``<prefix>.<what is expected>.<kind>``: ``*.healthy.*`` and ``*.long.cron`` must never
alert.
Besides the alerts, the jobs give every dashboard panel something to show (a trigger that
finds no tenant, a trigger run in progress, a system scheduler, an overdue scheduler).

The "paging" role (the Alertmanager test) has no switch time: the test turns its faults on
and off by creating and removing files in ``--control-dir`` (:data:`STOP_FILE`: one tenant
of a scheduler stops running; :data:`HANG_FILE`: a cron's next run hangs until removed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from otel_jobtrack import configure, current_run, start_metrics_server, track_run

HEALTHY_CADENCE = {"every": 1, "grace": 10, "max_runtime": 20}
"""Grace and max_runtime cover what a rule sees late: the scrape or export interval, the rule
interval, and on VictoriaMetrics a few seconds until ingested samples are searchable."""
DOOMED_CADENCE = {"every": 1, "grace": 10}
STUCK_CADENCE = {"every": 1, "grace": 10, "max_runtime": 2}
"""A max_runtime well below the grace: the run is judged stuck before the job is missed."""
STOP_FILE = "stop"
HANG_FILE = "hang"


class Workload:
    def __init__(
        self, switch_at: float, prefix: str = "e2e", control_dir: Path | None = None
    ) -> None:
        self.switch_at = switch_at
        self.prefix = prefix
        self.control_dir = control_dir
        self.rng = random.Random(7)
        self.limited_calls = 0

    def name(self, what: str) -> str:
        """The job name ``<prefix>.<what>`` (``what`` says what is expected of the job)."""
        return f"{self.prefix}.{what}"

    @property
    def switched(self) -> bool:
        return time.time() >= self.switch_at

    def every(self, period: Callable[[], float], body: Callable[[], None]) -> None:
        """Run ``body`` for ever in a daemon thread, ``period()`` seconds apart."""

        def loop() -> None:
            while True:
                # The failing job's exception, already recorded as a failure.
                with contextlib.suppress(RuntimeError):
                    body()
                time.sleep(period())

        threading.Thread(target=loop, daemon=True).start()

    # -- healthy jobs ------------------------------------------------------------------------

    def healthy_cron(self) -> None:
        with track_run(self.name("healthy.cron"), kind="cron", **HEALTHY_CADENCE) as run:
            run.add_resources(2)

    def healthy_schedule(self, tenant: str) -> None:
        with track_run(
            self.name("healthy.schedule"), kind="schedule", tenant=tenant, **HEALTHY_CADENCE
        ) as run:
            run.add_resources(self.rng.randint(9, 11))

    def healthy_resource(self) -> None:
        with track_run(self.name("healthy.resource"), kind="resource", tenant="alpha") as run:
            time.sleep(0.02)
            run.add_resources(5)

    def healthy_maintenance(self) -> None:
        # A system job (no tenant) next to the tenant schedulers.
        with track_run(self.name("healthy.maintenance"), kind="schedule") as run:
            run.add_resources(1)

    def long_cron(self) -> None:
        # A trigger run in progress for the whole test; it declares no max_runtime.
        with track_run(self.name("long.cron"), kind="cron"):
            threading.Event().wait()  # never returns

    def healthy_sometimes_limited(self) -> None:
        # Every third run refused by the limiter, always: normal for this job. (Not at random:
        # in a 5 s window of 20 runs, chance alone would double the share now and then.)
        self.limited_calls += 1
        with track_run(self.name("healthy.limited"), kind="schedule", tenant="gamma") as run:
            if self.limited_calls % 3 == 0:
                run.mark_limited()
            else:
                run.add_resources(3)

    # -- unhealthy from the start ------------------------------------------------------------

    def failing_schedule(self) -> None:
        with track_run(self.name("failing.schedule"), kind="schedule", tenant="acme"):
            raise RuntimeError("tenant database unavailable")

    def empty_cron(self) -> None:
        with track_run(self.name("empty.cron"), kind="cron"):
            pass  # finds no tenant to schedule

    def empty_schedule(self) -> None:
        with track_run(self.name("empty.schedule"), kind="schedule", tenant="acme"):
            pass  # finds nothing to schedule

    def stuck_batch(self) -> None:
        with track_run(self.name("stuck.batch"), kind="batch", tenant="acme", max_runtime=2):
            threading.Event().wait()  # never returns

    # -- unhealthy after the switch ------------------------------------------------------------

    def limited_schedule(self) -> None:
        with track_run(self.name("limited.schedule"), kind="schedule", tenant="acme") as run:
            if self.switched:
                run.mark_limited()  # its tenant lock is never released any more
            else:
                run.add_resources(1)

    def spiky_schedule(self, tenant: str) -> None:
        with track_run(self.name("spiky.schedule"), kind="schedule", tenant=tenant) as run:
            run.add_resources(100 if tenant == "whale" and self.switched else 10)

    def shrinking_resource(self) -> None:
        with track_run(self.name("shrinking.resource"), kind="resource", tenant="acme") as run:
            run.add_resources(2 if self.switched else 20)

    def slow_resource(self) -> None:
        with track_run(self.name("slow.resource"), kind="resource", tenant="acme") as run:
            time.sleep(0.4 if self.switched else 0.01)
            run.add_resources(1)

    def slowing_cron(self) -> None:
        with track_run(self.name("slowing.cron"), kind="cron") as run:
            run.add_resources(1)

    def misuse(self) -> None:
        if self.switched:
            current_run().add_resources()  # outside any run: an instrumentation problem

    # -- the process that gets killed ----------------------------------------------------------

    def doomed_cron(self) -> None:
        with track_run(self.name("doomed.cron"), kind="cron", **DOOMED_CADENCE) as run:
            run.add_resources(1)

    def doomed_schedule(self) -> None:
        with track_run(
            self.name("doomed.schedule"), kind="schedule", tenant="acme", **DOOMED_CADENCE
        ) as run:
            run.add_resources(1)

    # -- the paging role: faults the test turns on and off -------------------------------------

    def control(self, name: str) -> bool:
        """Whether the test created the control file ``name``."""
        return self.control_dir is not None and (self.control_dir / name).exists()

    def stopping_schedule(self, tenant: str) -> None:
        if tenant == "acme" and self.control(STOP_FILE):
            return  # its trigger stopped picking the tenant
        with track_run(
            self.name("stops.schedule"), kind="schedule", tenant=tenant, **HEALTHY_CADENCE
        ) as run:
            run.add_resources(1)

    def hanging_cron(self) -> None:
        with track_run(self.name("stuck.cron"), kind="cron", **STUCK_CADENCE) as run:
            while self.control(HANG_FILE):
                time.sleep(0.1)  # a network call without a timeout
            run.add_resources(1)

    def start(self, role: str) -> None:
        def fast() -> float:
            return 0.25

        if role == "paging":
            self.every(fast, self.healthy_cron)
            for tenant in ("acme", "beta"):
                self.every(fast, functools.partial(self.stopping_schedule, tenant))
            self.every(fast, self.hanging_cron)
            return
        if role == "doomed":
            self.every(fast, self.doomed_cron)
            self.every(fast, self.doomed_schedule)
            return
        self.every(fast, self.healthy_cron)
        self.every(fast, self.healthy_maintenance)
        threading.Thread(target=self.long_cron, daemon=True).start()
        for tenant in ("alpha", "beta"):
            self.every(fast, functools.partial(self.healthy_schedule, tenant))
        self.every(lambda: 0.2, self.healthy_resource)
        self.every(fast, self.healthy_sometimes_limited)
        self.every(fast, self.failing_schedule)
        self.every(fast, self.empty_cron)
        self.every(fast, self.empty_schedule)
        threading.Thread(target=self.stuck_batch, daemon=True).start()
        self.every(fast, self.limited_schedule)
        for tenant in ("whale", "minnow"):
            self.every(fast, functools.partial(self.spiky_schedule, tenant))
        self.every(fast, self.shrinking_resource)
        self.every(lambda: 0.1, self.slow_resource)
        self.every(lambda: 3.0 if self.switched else 0.25, self.slowing_cron)
        self.every(lambda: 0.5, self.misuse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", choices=("main", "doomed", "paging"), required=True)
    parser.add_argument("--switch-at", type=float, required=True, help="unix time")
    parser.add_argument("--prefix", default="e2e", help="first part of every job name")
    parser.add_argument("--otlp-endpoint", help="also export over OTLP/HTTP to this URL")
    parser.add_argument("--control-dir", type=Path, help="fault switches of the paging role")
    args = parser.parse_args()
    if args.otlp_endpoint:
        configure(
            "otlp",
            endpoint=args.otlp_endpoint,
            export_interval=1.0,
            service_name=f"jobtrack-{args.prefix}-{args.role}",
        )
    start_metrics_server(port=args.port, addr="127.0.0.1")
    Workload(args.switch_at, args.prefix, args.control_dir).start(args.role)
    threading.Event().wait()


if __name__ == "__main__":
    main()
