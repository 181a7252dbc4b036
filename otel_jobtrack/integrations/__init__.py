"""Ready-made instrumentation for the frameworks jobs run in: Celery, APScheduler, gunicorn.

Each integration is its own module and imports its framework only when imported itself, so
the core install needs none of them (``pip install 'otel-jobtrack[celery]'`` and so on).
Setups in full: ``docs/integrations.md``.
"""
