"""Build steps that pyproject.toml cannot express (everything else is declared there).

1. Ship the checked-in rules, dashboards and runbook in the wheel. The top-level ``alerts/``,
   ``dashboards/`` and ``docs/runbook.md`` stay the only copy kept in the repository (the
   developers' guide fixes that layout); ``build_py`` copies them into
   ``otel_jobtrack/_shipped/`` of the build, so no second copy can go stale in git. Editable
   installs read the top-level files directly (``otel_jobtrack.generators.shipped``).
2. The long description is the README with its relative links made absolute against the
   project's ``Repository`` URL, so they work on a package index page.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("alerts", "dashboards", "docs/runbook.md")
"""Same tuple as ``otel_jobtrack.generators.shipped.SHIPPED`` (a test compares them)."""
PACKAGE_DIR = "otel_jobtrack/_shipped"

# [text](target) and ![alt](target): the target up to whitespace or the closing parenthesis.
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)")


class BuildWithShippedFiles(build_py):
    """``build_py`` that also copies :data:`SHIPPED` into the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the source tree is read directly
            return
        target = Path(self.build_lib) / PACKAGE_DIR
        for rel in SHIPPED:
            source = ROOT / rel
            if not source.exists():
                raise FileNotFoundError(f"{rel} is missing: the package ships it")
            if source.is_dir():
                shutil.copytree(
                    source,
                    target / rel,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / rel)


def absolute_links(markdown: str, base: str) -> str:
    """``markdown`` with relative link and image targets resolved against ``base``."""

    def resolve(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", target, flags=re.IGNORECASE):
            return match.group(0)
        kind = "raw" if match.group(1).startswith("!") else "blob"
        path = posixpath.normpath(target)
        return f"{match.group(1)}{base.rstrip('/')}/{kind}/main/{path}"

    return _LINK.sub(resolve, markdown)


def long_description() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return absolute_links(readme, project["urls"]["Repository"])


if __name__ == "__main__":
    setup(
        cmdclass={"build_py": BuildWithShippedFiles},
        long_description=long_description(),
        long_description_content_type="text/markdown",
    )
