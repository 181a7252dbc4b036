"""otel-jobtrack: did your recurring jobs really run?

Track every run of a cron trigger, per-tenant scheduler or worker job with one consistent
payload (invocations, duration, resources touched, success/failure/limited, per job and
tenant) and export it to Prometheus ``/metrics`` and/or OTLP with the same series names.
"""

from __future__ import annotations

import os

from otel_jobtrack.config import Exporters, configure
from otel_jobtrack.config import install_first_run_hook as _install_first_run_hook
from otel_jobtrack.contract import FAILURE, KINDS, LIMITED, STATES, SUCCESS, SYSTEM_TENANT
from otel_jobtrack.decorator import tracked
from otel_jobtrack.prometheus import (
    make_metrics_asgi_app,
    make_metrics_wsgi_app,
    register_default_collector,
    start_metrics_server,
)
from otel_jobtrack.pushgateway import push_to_gateway
from otel_jobtrack.run import Job, Run, current_run, track_run
from otel_jobtrack.settings import apply_environment, set_cardinality_limits, set_tenant_privacy

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
    from otel_jobtrack import multiprocess as _multiprocess

    _multiprocess.enable()
_install_first_run_hook()
