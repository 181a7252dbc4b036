"""Render an HTML file to PNG or PDF with a headless Chromium, when one is installed.

No browser library and no download: the ``chromium`` (or Chrome) program already on the
machine is started once per rendering, with a fresh profile directory and the flags that keep
it off the network (the report has no external asset, so nothing is lost). A PNG takes two
starts: one to measure the page height (``--dump-dom`` of a copy that writes its height into
the DOM), one to take a screenshot of exactly that height.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from otel_jobtrack.tools.query import ToolError

BROWSER_ENV: Final = "JOBTRACK_BROWSER"
CANDIDATES: Final = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)
MAX_HEIGHT: Final = 16000
"""Chromium's screenshots fail or come out blank above roughly 16k pixels."""

_MEASURE: Final = (
    "<script>document.documentElement.setAttribute('data-rendered-height',"
    " String(Math.ceil(document.documentElement.scrollHeight)));</script>"
)
_HEIGHT_RE: Final = re.compile(r'data-rendered-height="(\d+)"')


class BrowserMissing(ToolError):
    """No Chromium or Chrome could be found."""


class BrowserFailed(ToolError):
    """Chromium started but did not produce the file."""


def find_browser(explicit: str | None = None) -> str | None:
    """The browser to use: ``explicit``, ``$JOBTRACK_BROWSER``, or the first of
    :data:`CANDIDATES` on ``PATH``."""
    for choice in (explicit, os.environ.get(BROWSER_ENV)):
        if choice:
            found = shutil.which(choice)
            return found or (choice if os.access(choice, os.X_OK) else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser(explicit: str | None, what: str) -> str:
    """:func:`find_browser`, or a one-line :class:`BrowserMissing` saying what to do."""
    found = find_browser(explicit)
    if found is None:
        tried = explicit or os.environ.get(BROWSER_ENV) or ", ".join(CANDIDATES[:3])
        raise BrowserMissing(
            f"{what} needs a headless Chromium or Chrome and none was found (looked for "
            f"{tried}); install one (Debian: apt-get install chromium), point --browser or "
            f"${BROWSER_ENV} at it, or use --format html"
        )
    return found


def base_flags(profile: Path) -> list[str]:
    """Headless, no GPU, no first-run or background network traffic, a throw-away profile.
    ``--no-sandbox`` only as root, where Chromium refuses to start with its sandbox."""
    flags = [
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.insert(1, "--no-sandbox")
    return flags


def run_browser(
    browser: str, args: Sequence[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run the browser with :func:`base_flags` plus ``args`` in a fresh profile."""
    with tempfile.TemporaryDirectory(prefix="jobtrack-browser-") as profile:
        cmd = [browser, *base_flags(Path(profile)), *args]
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BrowserFailed(f"{browser} did not finish within {timeout:g}s") from None
        except OSError as e:
            raise BrowserFailed(f"cannot start {browser}: {e}") from None


def _failure(browser: str, proc: subprocess.CompletedProcess[str], what: str) -> BrowserFailed:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "dbus" not in ln.lower()]
    last = lines[-1].strip() if lines else "no error output"
    return BrowserFailed(f"{browser} could not {what} (exit {proc.returncode}): {last}")


def dump_dom(html_file: Path, browser: str, width: int = 1200, height: int = 900) -> str:
    """The DOM after loading ``html_file``, as Chromium serialises it."""
    proc = run_browser(
        browser,
        [f"--window-size={width},{height}", "--dump-dom", html_file.resolve().as_uri()],
    )
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        raise _failure(browser, proc, f"load {html_file}")
    return proc.stdout


def page_height(html_file: Path, browser: str, width: int) -> int:
    """The rendered height of the page at ``width`` pixels."""
    text = html_file.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="jobtrack-measure-") as tmp:
        probe = Path(tmp) / "measure.html"
        marker = "</body>"
        at = text.lower().rfind(marker)
        probe.write_text(
            text[:at] + _MEASURE + text[at:] if at >= 0 else text + _MEASURE, encoding="utf-8"
        )
        # A short window: the document is then exactly as high as its content.
        dom = dump_dom(probe, browser, width, height=100)
    match = _HEIGHT_RE.search(dom)
    if not match:
        raise BrowserFailed(f"{browser} did not report the page height of {html_file}")
    return int(match.group(1))


def screenshot(
    html_file: Path, out: Path, browser: str, width: int = 1200, height: int | None = None
) -> int:
    """PNG of the whole page (or its first ``height`` pixels); returns the height used."""
    if height is None:
        height = min(max(page_height(html_file, browser, width), 100), MAX_HEIGHT)
    out = out.resolve()
    out.unlink(missing_ok=True)
    proc = run_browser(
        browser,
        [
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            html_file.resolve().as_uri(),
        ],
    )
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise _failure(browser, proc, f"take a screenshot of {html_file}")
    return height


def print_pdf(html_file: Path, out: Path, browser: str) -> None:
    """PDF of the page as Chromium prints it (A4 unless the page's CSS says otherwise)."""
    out = out.resolve()
    out.unlink(missing_ok=True)
    proc = run_browser(
        browser,
        [
            f"--print-to-pdf={out}",
            "--no-pdf-header-footer",
            "--print-to-pdf-no-header",
            html_file.resolve().as_uri(),
        ],
    )
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise _failure(browser, proc, f"print {html_file} to PDF")
