"""``python -m otel_jobtrack``: the ``otel-jobtrack`` command."""

import sys

from otel_jobtrack.tools.cli import main

sys.exit(main())
