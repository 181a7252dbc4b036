"""Self-observability: problems inside the instrumentation are counted and logged, never raised.

A job must never fail because its metrics could not be recorded. Each distinct problem is
logged once (with its traceback) and counted in ``jobtrack_instrumentation_errors_total``
or ``jobtrack_export_errors_total`` so it stays visible without flooding the log.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

logger = logging.getLogger("otel_jobtrack")

_lock = threading.Lock()
_instrumentation_errors: Counter[str] = Counter()
_export_errors: Counter[str] = Counter()
_logged: set[str] = set()


def instrumentation_error(where: str, exc: BaseException | None = None) -> None:
    """Record a problem inside otel-jobtrack; log it the first time ``where`` happens."""
    try:
        with _lock:
            _instrumentation_errors[where] += 1
            first = where not in _logged
            _logged.add(where)
        if first:
            logger.warning(
                "otel-jobtrack: instrumentation problem in %s (job unaffected; "
                "further occurrences are only counted)",
                where,
                exc_info=exc,
            )
    except Exception:  # pragma: no cover - logging itself broke; nothing left to do
        pass


def instrumentation_problem(where: str, message: str) -> None:
    """Record a problem whose cause is known; log ``message`` (one line, no traceback) once.

    For what the environment got wrong (a missing package, a bad directory or value): the
    message says what to change, a traceback would only hide it.
    """
    try:
        with _lock:
            _instrumentation_errors[where] += 1
            key = f"{where}\0{message}"
            first = key not in _logged
            _logged.add(key)
        if first:
            logger.error("otel-jobtrack: %s", message)
    except Exception:  # pragma: no cover - logging itself broke; nothing left to do
        pass


def export_error(exporter: str, exc: BaseException | None = None) -> None:
    """Record a failed export; log the first failure of each exporter and every 100th after."""
    try:
        with _lock:
            _export_errors[exporter] += 1
            count = _export_errors[exporter]
        if count == 1 or count % 100 == 0:
            logger.warning(
                "otel-jobtrack: export via %s failed (%d failures so far): %s",
                exporter,
                count,
                exc,
            )
    except Exception:  # pragma: no cover
        pass


def instrumentation_error_counts() -> dict[str, int]:
    """Snapshot of instrumentation problems by place, for the self-metric."""
    with _lock:
        return dict(_instrumentation_errors)


def export_error_counts() -> dict[str, int]:
    """Snapshot of export failures by exporter, for the self-metric."""
    with _lock:
        return dict(_export_errors)


def reset_for_tests() -> None:
    """Forget counts and which problems were logged."""
    with _lock:
        _instrumentation_errors.clear()
        _export_errors.clear()
        _logged.clear()
