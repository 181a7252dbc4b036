"""otel-jobtrack: did your recurring jobs really run?

Track every run of a cron trigger, per-tenant scheduler or worker job with one consistent
payload (invocations, duration, resources touched, success/failure/limited, per job and
tenant) and export it to Prometheus ``/metrics`` and/or OTLP with the same series names.
"""

from __future__ import annotations

import os

from otel_jobtrack._core.contract import FAILURE, KINDS, LIMITED, STATES, SUCCESS, SYSTEM_TENANT
from otel_jobtrack._core.decorator import tracked
from otel_jobtrack._core.run import Job, Run, current_run, track_run
from otel_jobtrack._core.settings import (
    apply_environment,
    set_cardinality_limits,
    set_tenant_privacy,
)
from otel_jobtrack.exporters.pipeline import Exporters, configure
from otel_jobtrack.exporters.pipeline import install_first_run_hook as _install_first_run_hook
from otel_jobtrack.exporters.prometheus.app import (
    make_metrics_asgi_app,
    make_metrics_wsgi_app,
    register_default_collector,
    start_metrics_server,
)
from otel_jobtrack.exporters.pushgateway import push_to_gateway

__version__ = "0.1.0"

__all__ = [
    "FAILURE",
    "KINDS",
    "LIMITED",
    "STATES",
    "SUCCESS",
    "SYSTEM_TENANT",
    "Exporters",
    "Job",
    "Run",
    "configure",
    "current_run",
    "make_metrics_asgi_app",
    "make_metrics_wsgi_app",
    "push_to_gateway",
    "set_cardinality_limits",
    "set_tenant_privacy",
    "start_metrics_server",
    "track_run",
    "tracked",
]

register_default_collector()
apply_environment()
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    from otel_jobtrack.exporters.prometheus import multiprocess as _multiprocess

    _multiprocess.enable_from_environment()
_install_first_run_hook()
