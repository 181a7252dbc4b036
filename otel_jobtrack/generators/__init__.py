"""Generators of checked-in files: alert and recording rules, Grafana dashboards.

They read only the metric contract; nothing on a job's path imports them.
"""
