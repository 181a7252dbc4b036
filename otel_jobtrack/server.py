"""Compatibility alias: ``otel_jobtrack.server`` is now
:mod:`otel_jobtrack.exporters.prometheus.server`.

Kept because 0.1's documentation named this import path; new code imports the new one. The
old name is an alias of the same module object, so state and private names are shared.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("otel_jobtrack.exporters.prometheus.server")
