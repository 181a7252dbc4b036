"""An Alertmanager configuration for the alerts, generated from the same settings as the rules.

Alert names, severities and the labels the inhibitions compare all come from
:class:`~otel_jobtrack.generators.rules.config.RulesConfig`, so the configuration cannot drift
from the rules it routes. It groups by job and tenant, pages for the paged severities and
sends everything else to a ticket/chat receiver, and lets a cause silence the alerts it
causes (:func:`~otel_jobtrack.generators.rules.config.inhibitions`). The receivers are
placeholders.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any, Final

from otel_jobtrack.generators.defaults import canonical_duration, parse_duration
from otel_jobtrack.generators.rules.config import (
    ALERT_NAMES,
    ALERTMANAGER_PLACEHOLDER_URL,
    EXPORTER_DOWN,
    MISSED_RUN,
    PREFIX,
    RulesConfig,
    inhibitions,
)

__all__ = [
    "ALERTMANAGER_FILE",
    "ALERTMANAGER_README_FILE",
    "GROUP_BY",
    "PAGE_RECEIVER",
    "TICKET_RECEIVER",
    "config",
    "inhibit_rules",
    "jobtrack_matcher",
    "receiver_of",
    "receivers",
    "render_config",
    "render_readme",
    "route",
    "routing_table",
]

ALERTMANAGER_FILE: Final = "alertmanager/alertmanager.yml"
ALERTMANAGER_README_FILE: Final = "alertmanager/README.md"
PAGE_RECEIVER: Final = "jobtrack-page"
TICKET_RECEIVER: Final = "jobtrack-ticket"
GROUP_BY: Final = ("job_name", "tenant")
"""The contract's job and tenant labels (``job`` is Prometheus' scrape job, not ours)."""


def _matcher_any(label: str, values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return f'{label}="{values[0]}"'
    return f'{label}=~"{"|".join(re.escape(v) for v in values)}"'


def jobtrack_matcher() -> str:
    """The matcher of every otel-jobtrack alert (the route to copy into your own tree)."""
    return f'alertname=~"{PREFIX}.+"'


def receiver_of(cfg: RulesConfig, alert: str) -> str:
    """The receiver an alert's notifications go to under ``cfg``."""
    paged = cfg.severities[alert] in cfg.alertmanager_page_severities
    return PAGE_RECEIVER if paged else TICKET_RECEIVER


def route(cfg: RulesConfig) -> dict[str, Any]:
    """The routing tree: otel-jobtrack's alerts grouped by job and tenant, paged by severity."""
    return {
        "receiver": TICKET_RECEIVER,
        "routes": [
            {
                "matchers": [jobtrack_matcher()],
                "receiver": TICKET_RECEIVER,
                "group_by": list(GROUP_BY),
                "group_wait": canonical_duration(cfg.alertmanager_group_wait),
                "group_interval": canonical_duration(cfg.alertmanager_group_interval),
                "repeat_interval": canonical_duration(cfg.alertmanager_ticket_repeat_interval),
                "routes": [
                    {
                        "matchers": [_matcher_any("severity", cfg.alertmanager_page_severities)],
                        "receiver": PAGE_RECEIVER,
                        "repeat_interval": canonical_duration(
                            cfg.alertmanager_page_repeat_interval
                        ),
                    }
                ],
            }
        ],
    }


def inhibit_rules(cfg: RulesConfig) -> list[dict[str, Any]]:
    """One inhibit rule per inhibition of ``cfg``."""
    return [
        {
            "source_matchers": [f'alertname="{rule.source}"'],
            "target_matchers": [f'alertname="{rule.target}"'],
            "equal": list(rule.equal),
        }
        for rule in inhibitions(cfg)
    ]


def receivers(cfg: RulesConfig) -> list[dict[str, Any]]:
    """The two receivers, posting to the configured webhooks with resolved notifications."""
    return [
        {"name": name, "webhook_configs": [{"url": url, "send_resolved": True}]}
        for name, url in (
            (PAGE_RECEIVER, cfg.alertmanager_page_url),
            (TICKET_RECEIVER, cfg.alertmanager_ticket_url),
        )
    ]


def config(cfg: RulesConfig) -> dict[str, Any]:
    """The whole configuration as plain data (what the file holds, without its comments)."""
    return {"route": route(cfg), "inhibit_rules": inhibit_rules(cfg), "receivers": receivers(cfg)}


def _comment(text: str, indent: str = "") -> str:
    return "".join(f"{indent}# {line}".rstrip() + "\n" for line in text.splitlines())


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _indented(text: str, indent: str) -> str:
    return "".join(indent + line + "\n" for line in text.splitlines())


def _placeholders(cfg: RulesConfig) -> bool:
    return any(
        url.startswith(ALERTMANAGER_PLACEHOLDER_URL)
        for url in (cfg.alertmanager_page_url, cfg.alertmanager_ticket_url)
    )


def render_config(cfg: RulesConfig, header: str, dump: Callable[[Any], str]) -> str:
    """The configuration file: ``header``, then each section with what it is for."""
    paged = ", ".join(cfg.alertmanager_page_severities)
    out = [
        header,
        "\n",
        _comment(
            "Alertmanager configuration for the otel-jobtrack alerts: README.md next to this\n"
            "file explains each choice and how to merge it into an existing configuration.\n"
            "Check it with: amtool check-config alertmanager.yml"
        ),
        "\n",
        _comment(
            f"Every {PREFIX}* alert, grouped by job and tenant (one notification per job and\n"
            f"tenant, whatever else fires for it); severity {paged} pages, the rest goes to\n"
            "the ticket/chat receiver. The root receives everything else in this example."
        ),
        dump({"route": route(cfg)}),
        "\n",
        _comment("One cause, one page: while a cause fires, what it causes is silenced."),
        "inhibit_rules:\n",
    ]
    for rule, data in zip(inhibitions(cfg), inhibit_rules(cfg), strict=True):
        out.append(_comment(f"{_sentence(rule.why)}.", "  "))
        out.append(_indented(dump([data]), "  "))
    if not inhibitions(cfg):
        out[-1] = "inhibit_rules: []\n"
    out.append("\n")
    if _placeholders(cfg):
        out.append(
            _comment(
                "PLACEHOLDERS: replace both receivers with your own integrations (a\n"
                "pagerduty_configs or opsgenie_configs entry for the page, slack_configs or a\n"
                "ticketing webhook for the rest; keep send_resolved: true). The URLs below\n"
                "never resolve, so a forgotten placeholder fails in Alertmanager's log."
            )
        )
    out.append(dump({"receivers": receivers(cfg)}))
    return "".join(out)


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=94, initial_indent="- ", subsequent_indent="  ")


def _timing(cfg: RulesConfig) -> str:
    """Whether an unreachable exporter's alert comes before the missed runs it silences."""
    if EXPORTER_DOWN in cfg.disabled or MISSED_RUN in cfg.disabled:
        return ""
    source = canonical_duration(cfg.for_durations[EXPORTER_DOWN])
    target = canonical_duration(cfg.for_durations[MISSED_RUN])
    text = (
        f"`{EXPORTER_DOWN}` fires after `for: {source}`, `{MISSED_RUN}` after `for: {target}`. "
        "A job that was healthy when its process died last succeeded less than an interval "
        "before, so its missed run comes at least a grace period after the exporter went "
        "down, and the grace covers a scrape interval (declare it so)."
    )
    slack = parse_duration(target) + parse_duration(cfg.alertmanager_group_wait)
    if parse_duration(source) <= slack:
        return text + " So the exporter alert is there first, with `group_wait` to spare."
    return (
        text + f" **With these settings it may not be:** `for: {source}` is longer than "
        f"`for: {target}` plus `group_wait`, so jobs with a short interval plus grace page for "
        "their missed runs before the exporter alert silences them."
    )


def routing_table(cfg: RulesConfig) -> str:
    """Markdown rows: every enabled alert, its severity and receiver."""
    return "\n".join(
        f"| `{name}` | {cfg.severities[name]} | `{receiver_of(cfg, name)}` |"
        for name in ALERT_NAMES
        if name not in cfg.disabled
    )


def render_readme(cfg: RulesConfig, header: str, runbook_url: str) -> str:
    """``alertmanager/README.md`` for ``cfg``."""
    rules_ = "\n".join(
        _bullet(
            f"**{_sentence(rule.why)}**: `{rule.source}` silences `{rule.target}` "
            f"when they share {', '.join(f'`{x}`' for x in rule.equal)}."
        )
        for rule in inhibitions(cfg)
    )
    wait = canonical_duration(cfg.alertmanager_group_wait)
    interval = canonical_duration(cfg.alertmanager_group_interval)
    page_repeat = canonical_duration(cfg.alertmanager_page_repeat_interval)
    ticket_repeat = canonical_duration(cfg.alertmanager_ticket_repeat_interval)
    paged = ", ".join(f"`{s}`" for s in cfg.alertmanager_page_severities)
    targets = ", ".join(f"`{x}`" for x in cfg.target_labels)
    return f"""<!--
{header}-->
# Alertmanager configuration for otel-jobtrack

`alertmanager.yml` routes the otel-jobtrack alerts of `../jobtrack-rules.yaml`: generated from
the same settings as the rules (`otel-jobtrack rules`), so every alert name, severity and
label it refers to is the rules' own. `amtool check-config alertmanager.yml` accepts it.

**The receivers are placeholders.** `{PAGE_RECEIVER}` and `{TICKET_RECEIVER}` post to webhook
URLs under `{ALERTMANAGER_PLACEHOLDER_URL}` that never resolve: replace them with your
integrations, for example

```yaml
receivers:
  - name: {PAGE_RECEIVER}
    pagerduty_configs:
      - routing_key: <your PagerDuty integration key>
        send_resolved: true
  - name: {TICKET_RECEIVER}
    slack_configs:
      - api_url: <your Slack incoming webhook>
        channel: '#jobs'
        send_resolved: true      # Slack's default is false
```

or keep the webhooks and set `--set alertmanager_page_url=...` and
`--set alertmanager_ticket_url=...` when you generate.

## Routing

One route takes every alert whose name starts with `{PREFIX}` and sends it to
`{TICKET_RECEIVER}`; a child route sends the paged severities ({paged}) to
`{PAGE_RECEIVER}`. To use it in an existing configuration, make that route the first of your
root route's `routes:` (Alertmanager takes the first route that matches), and add
`inhibit_rules` and `receivers` to yours.

| alert | severity | receiver |
|---|---|---|
{routing_table(cfg)}

**Grouping: by `job_name` and `tenant`**, the contract's labels, so one job and tenant is one
notification, whatever fires for it (a paged alert and a ticket for the same job are two
notifications, one per receiver). Not by `job`: that is Prometheus' scrape job, the same for
every job a process runs. Alerts about a target rather than a job
(`JobTrackExporterDown`, otel-jobtrack's own errors) have neither label and share one
notification per receiver, listing every target.

**Timings, for jobs that run on a schedule:**

- `group_wait: {wait}`: a new group waits this long before its first notification, so that
  the other tenants of a job and the alert that silences it (a stuck run, an unreachable
  exporter) arrive first. The alerts have already waited their `for:` in Prometheus.
- `group_interval: {interval}`: news about a group already notified (another tenant, a
  resolution) waits this long; a recovered job is reported within it.
- `repeat_interval: {page_repeat}` for pages, `{ticket_repeat}` for tickets: a job that stays
  broken is reminded of, but a ticket once a day, since the outlier alerts judge against the
  previous day.

All receivers have `send_resolved: true`: the recovery of a job is a notification too.

## Inhibitions: one cause, one page

{rules_}

The labels compared are on both alerts by construction: `JobTrackExporterDown` fires per
scrape target with its {targets} labels (setting `target_labels`), and `JobTrackMissedRun`
carries those of the target that reported the job's latest run (recorded as
`kind_job_name_tenant:jobtrack_last_run_timestamp_seconds:latest_target`, read over the
`lookback`, so they outlive the dead target). A stuck run and a missed run share `kind`,
`job_name` and `tenant`.

Two properties keep an inhibition from losing or doubling a page; the defaults have both:

- **The cause pages.** A source whose severity is not paged would silence a page and page
  nobody: generating refuses such settings.
{
        _bullet(
            "**The cause fires first.** Alertmanager can only silence an alert while its source "
            f"fires. {_timing(cfg)} A stuck run silences the missed run from the moment it is "
            "judged stuck (`max_runtime`); while a run is in progress but not yet over its "
            "`max_runtime`, the missed run is the first news."
        )
    }

What each alert means and what to check first: [the runbook]({runbook_url}).

## How it is tested

- `amtool check-config` accepts the file, and `amtool config routes test` sends every alert
  with its severity to the receiver in the table above.
- End to end (`tests/backend/test_alertmanager_e2e.py`): a real Prometheus with the shipped
  rules scrapes instrumented workloads and sends to a real Alertmanager running this
  configuration, with its receivers pointed at a local webhook and the timings shortened
  (the same generator, other settings). A job that stops running produces exactly one
  notification group, for that job and tenant, and a resolved notification when it runs
  again; a killed process produces one `JobTrackExporterDown` page and no missed-run
  notification for its jobs; a stuck run produces its own page and no missed-run
  notification; nothing else is notified.

## Regenerate with your own settings

```sh
otel-jobtrack rules --output-dir alerts \\
    --set alertmanager_page_url=https://pager-bridge.example.org/hook \\
    --set 'alertmanager_page_severities=[critical]' --set alertmanager_group_wait=1m
otel-jobtrack rules --set alertmanager=false ...    # leave this folder out
```

Settings: `alertmanager_page_severities`, `alertmanager_page_url`, `alertmanager_ticket_url`,
`alertmanager_group_wait`, `alertmanager_group_interval`, `alertmanager_page_repeat_interval`,
`alertmanager_ticket_repeat_interval`, and `target_labels`, `severities`, `for_durations`,
`disabled` shared with the rules (`otel-jobtrack rules --print-config` lists them all).
"""
