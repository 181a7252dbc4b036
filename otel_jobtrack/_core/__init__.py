"""What runs inside every job process: the metric contract, runs, the store, self-metrics.

Internal: import the public API from :mod:`otel_jobtrack`. Nothing here imports an exporter,
a generator or a tool (``tests/unit/test_architecture.py`` checks it).
"""
