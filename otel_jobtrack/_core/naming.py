"""Default job names: ``module.qualname``, with ``__main__`` replaced by the script's name.

Every script run as ``python nightly_backup.py`` has the module name ``__main__``, so naming a
job after it would give ``__main__.main`` to the ``main()`` of every script, and two scripts
pushing to the same backend would share one series (the weekly cadence of one hiding the
missed runs of the other). The script's own module name is used instead: its file name
without ``.py`` (``nightly_backup.main``), or the name given to ``python -m`` (``pkg.tool``).
Where there is no script at all (an interactive session, ``python -c``), no name can be
derived, and the definition raises ``ValueError`` saying how to name the job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


def main_module_name() -> str:
    """The importable name of the running script (what ``__main__`` stands for)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        # python -m pkg.tool -> "pkg.tool"; python -m pkg (pkg/__main__.py) -> "pkg"
        return name.removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem and stem != "__main__":
            return stem
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        if parent:  # python some_dir/ (a directory or zip with __main__.py)
            return parent
    raise ValueError(
        "cannot derive a job name: the function is defined in __main__ without a script file "
        "(an interactive session or python -c); name the job explicitly, e.g. "
        "@tracked('nightly_backup.main', kind='cron')"
    )


def default_job_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of ``func``, with ``__main__`` replaced by the script's name."""
    module = getattr(func, "__module__", None) or "__main__"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not qualname:
        raise ValueError(f"cannot derive a job name from {func!r}: name the job explicitly")
    if module == "__main__":
        module = main_module_name()
    return f"{module}.{qualname}"
