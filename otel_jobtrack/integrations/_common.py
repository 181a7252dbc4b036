"""What the integrations share: tenant lookup in a call's arguments, cadences, private dirs."""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from otel_jobtrack._core import errors
from otel_jobtrack._core.cadence import cron_max_interval
from otel_jobtrack._core.contract import UNKNOWN_TENANT

TenantSpec = str | Callable[..., object] | None
"""An argument name (``"tenant_id"``, or ``"tenant.slug"`` for an attribute of it) or a
callable computing the tenant."""

_MISSING = object()


def tenant_from_arguments(
    func: Callable[..., Any], spec: str, where: str
) -> Callable[[tuple[Any, ...], Mapping[str, Any]], object]:
    """A function finding ``spec`` in a call's ``(args, kwargs)``, checked against ``func``.

    Raises ``ValueError`` now when ``func`` has no such parameter (and no ``**kwargs``).
    At call time a missing argument means no tenant (``system``); a failing attribute
    lookup gives ``unknown`` and is counted as an instrumentation problem.
    """
    name, _, path = spec.partition(".")
    attrs = path.split(".") if path else []
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = signature.parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if name not in params and not takes_kwargs:
            raise ValueError(
                f"{where}: tenant {spec!r} names no parameter of {func!r} "
                f"(parameters: {', '.join(params) or 'none'})"
            )

    def resolve(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
        value: object = kwargs.get(name, _MISSING)
        if value is _MISSING and signature is not None:
            try:
                value = signature.bind_partial(*args, **kwargs).arguments.get(name, _MISSING)
            except TypeError:
                value = _MISSING
        if value is _MISSING:
            return None
        try:
            for attr in attrs:
                value = getattr(value, attr)
        except Exception as exc:
            errors.instrumentation_error(f"{where} tenant", exc)
            return UNKNOWN_TENANT
        return value

    return resolve


def call_tenant(func: Callable[..., object], where: str, *args: object, **kwargs: object) -> object:
    """The tenant a user callable returns; ``unknown`` (counted) when it raises."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        errors.instrumentation_error(f"{where} tenant", exc)
        return UNKNOWN_TENANT


def interval_of(seconds: float | None = None, cron: str | None = None) -> float:
    """Seconds between runs of a fixed interval or (the longest gap of) a cron expression."""
    if cron is not None:
        return cron_max_interval(cron)
    if seconds is None or not seconds > 0:
        raise ValueError(f"not a positive interval: {seconds!r}")
    return float(seconds)


def private_multiprocess_dir(prefix: str) -> str:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` in a fresh private directory (before any fork)."""
    directory = tempfile.mkdtemp(prefix=prefix)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from otel_jobtrack.exporters.prometheus import multiprocess

    multiprocess.enable()
    return directory
