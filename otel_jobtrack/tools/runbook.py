"""``otel-jobtrack runbook [ALERT]``: the alert runbook, without a checkout or a browser.

Every alert's ``runbook_url`` points at a section of ``docs/runbook.md`` (by default in the
project's repository; ``otel-jobtrack rules --runbook-url`` points them at your own copy).
This prints the copy shipped with the installed package: all of it, or one alert's section.
"""

from __future__ import annotations

import argparse
import re
import sys

from otel_jobtrack.generators import shipped

_HEADING = re.compile(r"^## (\S+)\s*$", re.MULTILINE)


def alert_names(text: str) -> list[str]:
    """The alerts that have a section (a ``## <AlertName>`` heading)."""
    return [name for name in _HEADING.findall(text) if name.startswith("JobTrack")]


def section(text: str, alert: str) -> str | None:
    """The section of ``alert`` (its name or its URL anchor, any case), heading included."""
    wanted = alert.strip().lstrip("#").lower()
    headings = list(_HEADING.finditer(text))
    for i, match in enumerate(headings):
        if match.group(1).lower() == wanted:
            end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
            return text[match.start() : end].rstrip() + "\n"
    return None


def main(argv: list[str]) -> int:
    """Print the runbook, or the section of one alert."""
    parser = argparse.ArgumentParser(
        prog="otel-jobtrack runbook",
        description="Print the alert runbook shipped with otel-jobtrack, or one alert's section.",
    )
    parser.add_argument(
        "alert", nargs="?", help="alert name or runbook anchor, e.g. JobTrackMissedRun"
    )
    parser.add_argument("--list", action="store_true", help="list the alerts with a section")
    args = parser.parse_args(argv)
    text = shipped.runbook()
    if text is None:
        print("otel-jobtrack runbook: this installation has no runbook", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(alert_names(text)))
        return 0
    if args.alert is None:
        sys.stdout.write(text)
        return 0
    found = section(text, args.alert)
    if found is None:
        known = ", ".join(alert_names(text))
        print(
            f"otel-jobtrack runbook: no section for {args.alert!r}; known: {known}",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(found)
    return 0
