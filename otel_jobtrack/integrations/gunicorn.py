"""gunicorn: server hooks that set up multiprocess mode, serve ``/metrics`` and count killed runs.

In ``gunicorn.conf.py``::

    from otel_jobtrack.integrations.gunicorn import *  # noqa: F403

(the hooks ``on_starting``, ``when_ready``, ``child_exit``, ``worker_exit``, ``on_exit``). A
config that defines one of these hooks itself calls ours from it, e.g.
``otel_jobtrack.integrations.gunicorn.child_exit(server, worker)``. What the hooks do:

- ``on_starting`` (arbiter, before any worker): uses ``PROMETHEUS_MULTIPROC_DIR`` if set,
  otherwise makes a private directory for this server (removed by ``on_exit``), and starts
  multiprocess mode; workers forked afterwards each write their own files.
- ``when_ready`` (arbiter): serves ``/metrics`` from the arbiter, summing every worker's files,
  on ``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT`` (default localhost:9464), or on
  :data:`METRICS_PORT`/:data:`METRICS_ADDR` if the config sets them. Set
  ``OTEL_JOBTRACK_GUNICORN_METRICS=off`` to serve it elsewhere (e.g. from the app with
  ``make_metrics_wsgi_app()``, which also sums every worker).
- ``child_exit`` (arbiter, after a worker exited, also when it was SIGKILLed or timed out):
  :func:`~otel_jobtrack.exporters.prometheus.multiprocess.mark_process_dead`, so the runs the
  worker had in progress are finished as ``failure`` and counted in
  ``jobtrack_killed_runs_total``, never lost and never in progress forever.
- ``worker_exit`` (worker, before it exits, e.g. recycled by ``max_requests``): delivers its
  runs over OTLP / to a Pushgateway now, bounded by :data:`EXIT_FLUSH_TIMEOUT` seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from otel_jobtrack._core import errors

logger = logging.getLogger("otel_jobtrack")

METRICS_PORT: int | None = None
"""Port of the arbiter's ``/metrics`` (``None``: ``OTEL_EXPORTER_PROMETHEUS_PORT`` or 9464)."""
METRICS_ADDR: str | None = None
"""Address to bind (``None``: ``OTEL_EXPORTER_PROMETHEUS_HOST`` or localhost)."""
EXIT_FLUSH_TIMEOUT = 10.0
"""Longest a worker waits at exit for its runs to be delivered."""

_state: dict[str, Any] = {"private_dir": None, "server": None}


def on_starting(server: Any) -> None:
    """Multiprocess mode for the workers to come (a private directory unless one is set)."""
    try:
        from otel_jobtrack.exporters.prometheus import multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.enable()
            return
        from otel_jobtrack.integrations._common import private_multiprocess_dir

        _state["private_dir"] = private_multiprocess_dir("otel-jobtrack-gunicorn-")
    except Exception as exc:
        errors.instrumentation_error("gunicorn on_starting", exc)


def when_ready(server: Any) -> None:
    """Serve ``/metrics`` from the arbiter (it outlives every worker)."""
    if os.environ.get("OTEL_JOBTRACK_GUNICORN_METRICS", "").strip().lower() in ("off", "0"):
        return
    if _state["server"] is not None:
        return
    try:
        from otel_jobtrack.exporters.prometheus.app import start_metrics_server

        served = _state["server"] = start_metrics_server(METRICS_PORT, METRICS_ADDR)
        logger.info("otel-jobtrack: serving /metrics at %s", served[0].url)
    except Exception as exc:
        errors.instrumentation_error("gunicorn metrics server", exc)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: finish its runs in progress as killed failures."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from otel_jobtrack.exporters.prometheus.multiprocess import mark_process_dead

        killed = mark_process_dead(worker.pid)
        if killed:
            logger.warning(
                "otel-jobtrack: worker %s died with %d run(s) in progress; counted as "
                "failures in jobtrack_killed_runs_total",
                worker.pid,
                killed,
            )
    except Exception as exc:
        errors.instrumentation_error("gunicorn child_exit", exc)


def worker_exit(server: Any, worker: Any) -> None:
    """Deliver the worker's runs before it exits (OTLP, Pushgateway), bounded."""
    try:
        from otel_jobtrack.exporters import pipeline

        exporters = pipeline.current()
        if exporters is not None:
            exporters.flush(EXIT_FLUSH_TIMEOUT)
    except Exception as exc:
        errors.instrumentation_error("gunicorn worker_exit", exc)


def on_exit(server: Any) -> None:
    """Stop serving ``/metrics`` and remove the private directory, if one was made."""
    served, _state["server"] = _state["server"], None
    if served is not None:
        served[0].shutdown()
        served[0].server_close()
    private, _state["private_dir"] = _state["private_dir"], None
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)


__all__ = ["child_exit", "on_exit", "on_starting", "when_ready", "worker_exit"]
