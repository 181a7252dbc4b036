"""``otel-jobtrack run``: track any command (shell script, CronJob, non-Python job) unchanged.

    otel-jobtrack run --job nightly.backup --kind cron --every 1d -- ./backup.sh --full

The command runs as a child with the same stdin, stdout, stderr and environment (plus
``OTEL_JOBTRACK_RESOURCES_FILE``); its exit status becomes the run's state, and
``otel-jobtrack run`` exits with the command's own status:

- exit 0: ``success``; an exit code given with ``--limited-exit-code``: ``limited``;
  any other exit code: ``failure``;
- killed by a signal: ``failure``, and the exit status is 128 + the signal number, as a shell
  reports it; a command that cannot be started: ``failure``, status 127 (not found) or 126.

Resources: the command may write counts to the file named by ``OTEL_JOBTRACK_RESOURCES_FILE``,
one number per line (``echo 42 >> "$OTEL_JOBTRACK_RESOURCES_FILE"``); their sum is the run's
resources. Signals sent to ``otel-jobtrack run`` (TERM, INT, HUP, QUIT, USR1, USR2) are passed to
the command; INT and QUIT typed at a terminal already reach the command directly, so they are
not sent twice. Delivery is chosen by the environment: ``OTEL_JOBTRACK_PUSHGATEWAY`` pushes
to a Pushgateway (grouped under the job name: ``job="nightly.backup"``);
``OTEL_METRICS_EXPORTER=otlp`` with the standard ``OTEL_EXPORTER_OTLP_*`` variables exports over
OTLP; both can be set. Delivery takes at most ``--export-timeout`` seconds after the command
ended, whatever the backends do.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_jobtrack.exporters.pipeline import Exporters

RESOURCES_ENV = "OTEL_JOBTRACK_RESOURCES_FILE"
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
TERMINAL_SIGNALS = ("SIGINT", "SIGQUIT")
DEFAULT_EXPORT_TIMEOUT = 10.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


class CommandFailed(Exception):
    """Ends the tracked run as ``failure`` (the command exited non-zero or was killed)."""


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m``, ``1d``, ``2w``."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}: use seconds or a number with s, m, h, d, w (e.g. 1d, 1h30m)"
        )
    return total


def _exit_code(code: str) -> int:
    value = int(code)
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"exit codes are 1-255, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack run",
        description="Run a command as one tracked job run; exit with the command's status.",
        epilog="Delivery: OTEL_JOBTRACK_PUSHGATEWAY and/or OTEL_METRICS_EXPORTER=otlp "
        f"(OTEL_EXPORTER_OTLP_*). The command can write resource counts to ${RESOURCES_ENV}.",
    )
    parser.add_argument("--job", required=True, help="job name, e.g. nightly.backup")
    parser.add_argument(
        "--kind", required=True, help="cron, schedule, resource or batch", metavar="KIND"
    )
    parser.add_argument("--tenant", default=None, help="tenant (default: system)")
    cadence = parser.add_mutually_exclusive_group()
    cadence.add_argument("--every", type=parse_duration, help="expected interval, e.g. 1d")
    cadence.add_argument("--cron", help='expected schedule, e.g. "0 3 * * *"')
    parser.add_argument("--grace", type=parse_duration, help="grace period, e.g. 30m")
    parser.add_argument("--max-runtime", type=parse_duration, help="longest normal run, e.g. 2h")
    parser.add_argument(
        "--limited-exit-code",
        type=_exit_code,
        action="append",
        default=[],
        metavar="CODE",
        help="exit code meaning 'refused by a concurrency limit' (state limited); repeatable",
    )
    parser.add_argument(
        "--export-timeout",
        type=parse_duration,
        default=DEFAULT_EXPORT_TIMEOUT,
        help="longest wait for delivery after the command ended "
        f"(default {DEFAULT_EXPORT_TIMEOUT:g}s)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command [args...]")
    return parser


def read_resources(path: str) -> tuple[float, int]:
    """Sum of the numbers in ``path`` (one per line) and how many lines were not numbers."""
    total: float = 0
    bad = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.strip()
                if not text:
                    continue
                try:
                    number = float(text) if any(ch in text for ch in ".eE") else int(text)
                except ValueError:
                    bad += 1
                    continue
                if number < 0 or not math.isfinite(number):
                    bad += 1
                    continue
                total += number
    except FileNotFoundError:
        pass
    return total, bad


def _in_terminal_foreground() -> bool:
    """Whether a key typed at our terminal (Ctrl-C) also reaches the command directly."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            return os.tcgetpgrp(fd) == os.getpgrp()
    return False


class _Forwarder:
    """Passes the signals this process receives on to the command."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        for name in FORWARDED:
            signum = getattr(signal, name, None)
            if signum is not None:
                self.previous[signum] = signal.signal(signum, self.handle)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            with contextlib.suppress(Exception):
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if signal.Signals(signum).name in TERMINAL_SIGNALS and _in_terminal_foreground():
            return  # the terminal sent it to the whole foreground group, command included
        proc = self.proc
        if proc is None:
            self.pending.append(signum)  # arrived while starting: sent once it runs
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        for signum in self.pending:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        self.pending.clear()


def _configure(job: str, timeout: float) -> Exporters | None:
    """Exporters from the environment, or ``None`` (with a note) when none is selected."""
    from otel_jobtrack import configure
    from otel_jobtrack.exporters.pipeline import PUSHGATEWAY_ENV

    pushgateway = os.environ.get(PUSHGATEWAY_ENV, "").strip() or None
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",")
        if n.strip() and n.strip().lower() not in ("none", "prometheus")
    ]
    if pushgateway is None and not names:
        print(
            f"otel-jobtrack run: no destination for the run of {job!r}: set {PUSHGATEWAY_ENV} "
            "or OTEL_METRICS_EXPORTER=otlp",
            file=sys.stderr,
        )
        return None
    # Grouped under the job's own name: each push replaces its group, so two commands run
    # by one service (one OTEL_SERVICE_NAME) must not share one.
    return configure(
        names or "none",
        pushgateway=pushgateway,
        push_job=job,
        exit_timeout=timeout,
        push_timeout=timeout,
    )


def run(args: argparse.Namespace) -> int:
    from otel_jobtrack import Job

    command: list[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    job = Job(
        args.job,
        kind=args.kind,
        every=args.every,
        cron=args.cron,
        grace=args.grace,
        max_runtime=args.max_runtime,
    )
    try:
        exporters = _configure(args.job, args.export_timeout)
    except ValueError as exc:
        print(f"otel-jobtrack run: {exc}", file=sys.stderr)
        exporters = None

    fd, resources_path = tempfile.mkstemp(prefix="otel-jobtrack-resources-")
    os.close(fd)
    env = dict(os.environ)
    env[RESOURCES_ENV] = resources_path
    forwarder = _Forwarder()
    forwarder.install()
    status = 0
    try:
        try:
            with job.run(args.tenant) as tracked_run:
                try:
                    proc = subprocess.Popen(command, env=env)
                except FileNotFoundError:
                    print(f"otel-jobtrack run: command not found: {command[0]}", file=sys.stderr)
                    status = 127
                    raise CommandFailed() from None
                except PermissionError:
                    print(f"otel-jobtrack run: permission denied: {command[0]}", file=sys.stderr)
                    status = 126
                    raise CommandFailed() from None
                forwarder.started(proc)
                returncode = proc.wait()
                total, bad = read_resources(resources_path)
                if bad:
                    print(
                        f"otel-jobtrack run: ignored {bad} line(s) of {RESOURCES_ENV} that "
                        "were not non-negative numbers",
                        file=sys.stderr,
                    )
                tracked_run.add_resources(total)
                status = 128 - returncode if returncode < 0 else returncode
                if returncode in args.limited_exit_code:
                    tracked_run.mark_limited()
                elif returncode != 0:
                    raise CommandFailed()
        except CommandFailed:
            pass
    finally:
        forwarder.restore()
        with contextlib.suppress(OSError):
            os.unlink(resources_path)
    if exporters is not None:
        deadline = time.monotonic() + args.export_timeout
        exporters.shutdown(timeout=max(0.0, deadline - time.monotonic()))
    return status


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("give the command to run after --, e.g. -- ./backup.sh")
    try:
        from otel_jobtrack._core.labels import validate_job_name, validate_kind

        validate_job_name(args.job)
        validate_kind(args.kind)
    except ValueError as exc:
        parser.error(str(exc))
    args.command = command
    try:
        return run(args)
    except ValueError as exc:  # a malformed --cron
        parser.error(str(exc))
