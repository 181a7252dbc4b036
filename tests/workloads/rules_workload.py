"""A workload for the alert rules' end-to-end test: healthy and unhealthy jobs on short cycles.

Run as a script: ``python tests/workloads/rules_workload.py --port N --role main|doomed
--switch-at UNIX_TIME``. It serves ``/metrics`` on 127.0.0.1 and runs every job in its own
thread, several times a second. At ``--switch-at`` the "anomaly" jobs change behaviour (a
tenant's volume jumps, a job slows down, a cron runs less often...), so that the rules have a
few seconds of normal history to compare with. Job names say what is expected of them:
``e2e.healthy.*`` must never alert.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable

from otel_jobtrack import current_run, start_metrics_server, track_run

HEALTHY_CADENCE = {"every": 1, "grace": 3, "max_runtime": 5}


class Workload:
    def __init__(self, switch_at: float) -> None:
        self.switch_at = switch_at
        self.rng = random.Random(7)

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
        with track_run("e2e.healthy.cron", kind="cron", **HEALTHY_CADENCE) as run:
            run.add_resources(2)

    def healthy_schedule(self, tenant: str) -> None:
        with track_run(
            "e2e.healthy.schedule", kind="schedule", tenant=tenant, **HEALTHY_CADENCE
        ) as run:
            run.add_resources(self.rng.randint(9, 11))

    def healthy_resource(self) -> None:
        with track_run("e2e.healthy.resource", kind="resource", tenant="alpha") as run:
            time.sleep(0.02)
            run.add_resources(5)

    def healthy_sometimes_limited(self) -> None:
        # A third of its runs refused by the limiter, always: normal for this job.
        with track_run("e2e.healthy.limited", kind="schedule", tenant="gamma") as run:
            if self.rng.random() < 1 / 3:
                run.mark_limited()
            else:
                run.add_resources(3)

    # -- unhealthy from the start ------------------------------------------------------------

    def failing_schedule(self) -> None:
        with track_run("e2e.failing.schedule", kind="schedule", tenant="acme"):
            raise RuntimeError("tenant database unavailable")

    def empty_schedule(self) -> None:
        with track_run("e2e.empty.schedule", kind="schedule", tenant="acme"):
            pass  # finds nothing to schedule

    def stuck_batch(self) -> None:
        with track_run("e2e.stuck.batch", kind="batch", tenant="acme", max_runtime=2):
            threading.Event().wait()  # never returns

    # -- unhealthy after the switch ------------------------------------------------------------

    def limited_schedule(self) -> None:
        with track_run("e2e.limited.schedule", kind="schedule", tenant="acme") as run:
            if self.switched:
                run.mark_limited()  # its tenant lock is never released any more
            else:
                run.add_resources(1)

    def spiky_schedule(self, tenant: str) -> None:
        with track_run("e2e.spiky.schedule", kind="schedule", tenant=tenant) as run:
            run.add_resources(100 if tenant == "whale" and self.switched else 10)

    def shrinking_resource(self) -> None:
        with track_run("e2e.shrinking.resource", kind="resource", tenant="acme") as run:
            run.add_resources(2 if self.switched else 20)

    def slow_resource(self) -> None:
        with track_run("e2e.slow.resource", kind="resource", tenant="acme") as run:
            time.sleep(0.4 if self.switched else 0.01)
            run.add_resources(1)

    def slowing_cron(self) -> None:
        with track_run("e2e.slowing.cron", kind="cron") as run:
            run.add_resources(1)

    def misuse(self) -> None:
        if self.switched:
            current_run().add_resources()  # outside any run: an instrumentation problem

    # -- the process that gets killed ----------------------------------------------------------

    def doomed_cron(self) -> None:
        with track_run("e2e.doomed.cron", kind="cron", every=1, grace=1) as run:
            run.add_resources(1)

    def start(self, role: str) -> None:
        def fast() -> float:
            return 0.25

        if role == "doomed":
            self.every(fast, self.doomed_cron)
            return
        self.every(fast, self.healthy_cron)
        for tenant in ("alpha", "beta"):
            self.every(fast, functools.partial(self.healthy_schedule, tenant))
        self.every(lambda: 0.2, self.healthy_resource)
        self.every(fast, self.healthy_sometimes_limited)
        self.every(fast, self.failing_schedule)
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
    parser.add_argument("--role", choices=("main", "doomed"), required=True)
    parser.add_argument("--switch-at", type=float, required=True, help="unix time")
    args = parser.parse_args()
    start_metrics_server(port=args.port, addr="127.0.0.1")
    Workload(args.switch_at).start(args.role)
    threading.Event().wait()


if __name__ == "__main__":
    main()
