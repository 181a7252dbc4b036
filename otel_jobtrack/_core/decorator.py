"""``@tracked``: track every call of a function, method or coroutine function as a run.

Built on wrapt, so the wrapper keeps the signature, ``__wrapped__``, introspection and
descriptor behaviour (methods, classmethods, staticmethods) of what it wraps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import wrapt

from otel_jobtrack._core.labels import validate_job_name, validate_kind
from otel_jobtrack._core.naming import default_job_name
from otel_jobtrack._core.run import Job, Run, Seconds, get_job

F = TypeVar("F", bound=Callable[..., Any])

_NOT_GIVEN: Any = object()


def tracked(
    job_name: str | None = None,
    *,
    kind: str,
    tenant: object = None,
    tenant_arg: str | None = None,
    limited_exceptions: tuple[type[BaseException], ...] = (),
    suppress_limited: bool = False,
    every: Seconds | None = None,
    cron: str | None = None,
    grace: Seconds | None = None,
    max_runtime: Seconds | None = None,
) -> Callable[[F], F]:
    """Decorate a job so each call is one tracked run.

    ``job_name`` defaults to the function's module and qualified name (for a script run as
    ``python nightly_backup.py``: ``nightly_backup.main``, not ``__main__.main``). The tenant
    is either a fixed value (``tenant=``) or read from the call's arguments
    (``tenant_arg="tenant_id"``, or a dotted path such as ``"tenant.slug"`` to take an
    attribute of an argument). Other options are those of :func:`otel_jobtrack.track_run`.
    """
    if tenant is not None and tenant_arg is not None:
        raise ValueError("give either tenant= or tenant_arg=, not both")
    if tenant_arg is not None and (not isinstance(tenant_arg, str) or not tenant_arg):
        raise ValueError(f"tenant_arg must be an argument name, got {tenant_arg!r}")
    if job_name is not None and callable(job_name):
        raise ValueError("use @tracked(kind=...), with parentheses and a kind")
    validate_kind(kind)
    if job_name is not None:
        validate_job_name(job_name)

    def decorate(func: F) -> F:
        target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
        name = job_name or default_job_name(target)
        job = get_job(
            name, kind, limited_exceptions, suppress_limited, every, cron, grace, max_runtime
        )
        resolve = _tenant_resolver(target, tenant_arg) if tenant_arg else None
        fixed_tenant = tenant
        is_async = inspect.iscoroutinefunction(target)

        def make_run(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Run:
            return Run(job, resolve(instance, args, kwargs) if resolve else fixed_tenant)

        if is_async:

            @wrapt.decorator
            async def async_wrapper(
                wrapped: Callable[..., Any],
                instance: Any,
                args: tuple[Any, ...],
                kwargs: dict[str, Any],
            ) -> Any:
                async with make_run(instance, args, kwargs):
                    return await wrapped(*args, **kwargs)

            return cast(F, async_wrapper(func))

        @wrapt.decorator
        def wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            with make_run(instance, args, kwargs):
                return wrapped(*args, **kwargs)

        return cast(F, wrapper(func))

    return decorate


def _tenant_resolver(
    func: Callable[..., Any], tenant_arg: str
) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], object]:
    """Find the tenant in a call's arguments by parameter name, checked at decoration time."""
    arg_name, _, attr_path = tenant_arg.partition(".")
    params = list(inspect.signature(func).parameters.values())
    names = [p.name for p in params]
    if arg_name not in names:
        raise ValueError(
            f"tenant_arg {tenant_arg!r}: {func.__qualname__} has no parameter {arg_name!r}"
        )
    index = names.index(arg_name)
    # wrapt passes bound-method calls without self/cls; plain functions with everything.
    has_self = bool(names) and names[0] in ("self", "cls")
    attrs = attr_path.split(".") if attr_path else []

    def resolve(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        try:
            if arg_name in kwargs:
                value = kwargs[arg_name]
            else:
                pos = index - 1 if has_self and instance is not None else index
                value = args[pos] if 0 <= pos < len(args) else _default(params[index])
            for attr in attrs:
                value = getattr(value, attr)
            return value
        except Exception:
            return None if not attrs else _unknown()

    return resolve


def _default(param: inspect.Parameter) -> object:
    return None if param.default is inspect.Parameter.empty else param.default


def _unknown() -> object:
    from otel_jobtrack._core.contract import UNKNOWN_TENANT

    return UNKNOWN_TENANT


__all__ = ["tracked", "Job"]
