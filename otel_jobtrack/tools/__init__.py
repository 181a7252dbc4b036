"""The ``otel-jobtrack`` command: demo workload, generators, benchmarks. Not on a job's path."""
