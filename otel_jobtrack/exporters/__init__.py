"""Exporters: how the store's totals leave the process (Prometheus, OTLP, Pushgateway)."""
