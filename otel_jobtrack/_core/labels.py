"""Validation of definitions (strict) and normalisation of run-time label values (forgiving).

Job names and kinds are fixed in code, so a bad one raises ``ValueError`` where the job is
defined. Tenants arrive at run time from data, so any value is turned into a safe label value
instead: a strange tenant must never break the job it labels.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import unicodedata
from collections.abc import Callable

from otel_jobtrack._core import errors
from otel_jobtrack._core.contract import KINDS, SYSTEM_TENANT, UNKNOWN_TENANT

MAX_JOB_NAME_LENGTH = 200
MAX_TENANT_LENGTH = 128
_CACHE_LIMIT = 10_000

_tenant_cache: dict[str, str] = {}


def validate_kind(kind: object) -> str:
    """Return ``kind`` if it is one of the known kinds, else raise ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}: expected one of {', '.join(KINDS)}")
    return str(kind)


def validate_job_name(name: object) -> str:
    """Return a job name usable as a label value, else raise ``ValueError``."""
    if not isinstance(name, str):
        raise ValueError(f"job name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("job name must not be empty")
    if len(name) > MAX_JOB_NAME_LENGTH:
        raise ValueError(f"job name longer than {MAX_JOB_NAME_LENGTH} characters: {name[:40]!r}...")
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise ValueError(f"job name contains control or unprintable characters: {name!r}")
    return name


def validate_seconds(what: str, value: object, *, allow_zero: bool = False) -> float | None:
    """Turn a number or ``timedelta`` into seconds; ``None`` stays ``None``."""
    if value is None:
        return None
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{what} must be seconds or a timedelta, got {value!r}")
    if (
        math.isnan(seconds)
        or math.isinf(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        raise ValueError(f"{what} must be a positive, finite duration, got {value!r}")
    return float(seconds)


def validate_resources(n: object) -> int | float:
    """Resources added to a run: a non-negative finite number."""
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise ValueError(f"resources must be a number, got {n!r}")
    if n < 0 or (isinstance(n, float) and (math.isnan(n) or math.isinf(n))):
        raise ValueError(f"resources must be a non-negative finite number, got {n!r}")
    return n


TenantMapper = Callable[[str], str]
_mapper: TenantMapper | None = None


def set_tenant_mapper(mapper: TenantMapper | None) -> None:
    """Pass every tenant (except ``system``) through ``mapper`` before it becomes a label."""
    global _mapper
    if mapper is not None and not callable(mapper):
        raise ValueError(f"tenant mapper must be callable, got {mapper!r}")
    _mapper = mapper
    _tenant_cache.clear()


def keyed_hash_mapper(key: bytes | str, length: int = 16) -> TenantMapper:
    """A mapper replacing each tenant by a stable keyed hash (HMAC-SHA256, hex, truncated).

    The same tenant always gets the same label, so dashboards and alerts still work per
    tenant, but the metrics backend never sees the identifier; whoever holds the key can
    recompute the label of a known tenant to look it up.
    """
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) < 16:
        raise ValueError("tenant hash key must be at least 16 bytes of secret material")
    if not 8 <= length <= 64:
        raise ValueError(f"hash length must be between 8 and 64 hex digits, got {length}")

    def mapper(tenant: str) -> str:
        return hmac.new(raw, tenant.encode("utf-8"), hashlib.sha256).hexdigest()[:length]

    return mapper


def normalize_tenant(tenant: object) -> str:
    """Turn any tenant value into a bounded, printable label value. Never raises.

    ``None`` becomes ``system``; other values become their text with control characters
    replaced by ``_``, invalid unicode replaced, and the length capped; then the tenant
    mapper (if any, e.g. a keyed hash for privacy) is applied.
    """
    if tenant is None:
        return SYSTEM_TENANT
    if type(tenant) is str:
        cached = _tenant_cache.get(tenant)
        if cached is not None:
            return cached
    try:
        text = tenant if isinstance(tenant, str) else str(tenant)
        cleaned = _clean(text)
    except Exception:
        return UNKNOWN_TENANT
    mapper = _mapper
    if mapper is not None and cleaned != SYSTEM_TENANT:
        try:
            cleaned = _clean(str(mapper(cleaned)))
        except Exception as exc:
            errors.instrumentation_error("tenant mapper", exc)
            return UNKNOWN_TENANT
    if type(tenant) is str and len(_tenant_cache) < _CACHE_LIMIT:
        _tenant_cache[tenant] = cleaned
    return cleaned


def _clean(text: str) -> str:
    if not text.isprintable():
        text = "".join("_" if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    # Lone surrogates cannot be encoded as UTF-8 and would break the exposition.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = text.strip()
    if len(text) > MAX_TENANT_LENGTH:
        text = text[:MAX_TENANT_LENGTH]
    return text or UNKNOWN_TENANT
