"""Process-wide settings that protect the metrics backend: cardinality limits and privacy.

Tenants are unbounded in real SaaS systems; series must not be. Each job keeps at most
``max_tenants_per_job`` tenants of its own and the process at most ``max_job_names`` jobs;
runs beyond that are counted under ``__overflow__`` (exact totals, bounded series) and in
``jobtrack_overflow_runs_total``. Environment variables set the same at import:
``OTEL_JOBTRACK_MAX_TENANTS_PER_JOB``, ``OTEL_JOBTRACK_MAX_JOB_NAMES`` and
``OTEL_JOBTRACK_TENANT_HASH_KEY`` (a secret that turns tenants into keyed hashes).
"""

from __future__ import annotations

import os

from otel_jobtrack._core import errors
from otel_jobtrack._core.labels import TenantMapper, keyed_hash_mapper, set_tenant_mapper
from otel_jobtrack._core.store import STORE, Store


def set_cardinality_limits(
    *,
    max_tenants_per_job: int | None = None,
    max_job_names: int | None = None,
    store: Store = STORE,
) -> None:
    """Change the limits (``None`` keeps the current value). Series created already stay."""
    for name, value in (
        ("max_tenants_per_job", max_tenants_per_job),
        ("max_job_names", max_job_names),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    with store.lock:
        if max_tenants_per_job is not None:
            store.max_tenants_per_job = max_tenants_per_job
        if max_job_names is not None:
            store.max_job_names = max_job_names


def set_tenant_privacy(
    *, hash_key: bytes | str | None = None, mapper: TenantMapper | None = None
) -> None:
    """Keep customer identifiers out of the metrics backend.

    ``hash_key`` replaces every tenant (except ``system``) with a stable HMAC-SHA256 of it;
    ``mapper`` applies your own function instead (e.g. a lookup to public slugs). With
    neither, tenants are exported as given. Applies to runs started afterwards.
    """
    if hash_key is not None and mapper is not None:
        raise ValueError("give either hash_key= or mapper=, not both")
    set_tenant_mapper(keyed_hash_mapper(hash_key) if hash_key is not None else mapper)


def apply_environment(environ: dict[str, str] | None = None) -> None:
    """Read the ``OTEL_JOBTRACK_*`` variables; a bad value is logged, counted in
    ``jobtrack_instrumentation_errors_total{where="environment"}`` and ignored, not raised."""
    env = os.environ if environ is None else environ
    for var in ("OTEL_JOBTRACK_MAX_TENANTS_PER_JOB", "OTEL_JOBTRACK_MAX_JOB_NAMES"):
        raw = env.get(var)
        if raw:
            try:
                limit = int(raw)
                if var.endswith("PER_JOB"):
                    set_cardinality_limits(max_tenants_per_job=limit)
                else:
                    set_cardinality_limits(max_job_names=limit)
            except Exception as exc:  # never raised: the variable is ignored
                errors.instrumentation_problem("environment", f"ignoring {var}={raw!r}: {exc}")
    key = env.get("OTEL_JOBTRACK_TENANT_HASH_KEY")
    if key:
        try:
            set_tenant_privacy(hash_key=key)
        except Exception as exc:
            errors.instrumentation_problem(
                "environment", f"ignoring OTEL_JOBTRACK_TENANT_HASH_KEY: {exc}"
            )
