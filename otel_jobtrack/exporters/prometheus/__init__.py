"""Prometheus exposition: the collector, the fast text renderer, web apps, server, multiprocess."""
