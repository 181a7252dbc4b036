"""``otel-jobtrack report`` without a server: the analysis and every output format.

The API's answers are written as the client returns them (:class:`Sample` and
:class:`Series`), so the thresholds behind each answer are tested on both sides.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics

import pytest

from otel_jobtrack.tools import _svg as svg
from otel_jobtrack.tools import browser
from otel_jobtrack.tools import report as rp
from otel_jobtrack.tools.query import Sample, Series

END = 1_700_000_000.0
STEP = 10.0
TIMES = [END - (5 - i) * STEP for i in range(6)]
OPTS = rp.ReportOptions(period=60.0, until=END, step=STEP)


def _labels(kind: str, job: str, tenant: str | None = None, **extra: str) -> dict[str, str]:
    out = {"kind": kind, "job_name": job, **extra}
    if tenant is not None:
        out["tenant"] = tenant
    return out


def _answers(**parts: list[object]) -> dict[str, list[object]]:
    keys = (
        "i_runs", "i_resources", "i_duration_sum", "i_p95", "i_previous", "i_last_run",
        "i_cadence", "r_runs", "r_resources", "r_duration_sum", "r_p95", "r_alerts",
    )  # fmt: skip
    return {k: list(parts.get(k, [])) for k in keys}


def _series(labels: dict[str, str], values: list[float | None]) -> Series:
    return Series(labels, [(t, v) for t, v in zip(TIMES, values, strict=True) if v is not None])


def _build(**parts: list[object]) -> rp.Report:
    return rp.build(_answers(**parts), OPTS, END - 60, END, STEP, TIMES, 1.0)  # type: ignore[arg-type]


def _scheduler(volumes: dict[str, float], previous: dict[str, float] | None = None) -> rp.Report:
    """One scheduler whose tenants touched ``volumes`` (and ``previous`` before)."""
    runs, res, prev = [], [], []
    for tenant, volume in volumes.items():
        runs.append(Sample(_labels("schedule", "s", tenant, state="success"), 6.0))
        res.append(Sample(_labels("schedule", "s", tenant), volume))
        if previous is not None:
            prev.append(Sample(_labels("schedule", "s", tenant, q="resources"), previous[tenant]))
            prev.append(Sample(_labels("schedule", "s", tenant, q="samples"), 60.0))
            prev.append(Sample(_labels("schedule", "s", tenant, q="previous_samples"), 60.0))
    return _build(i_runs=runs, i_resources=res, i_previous=prev)


# ------------------------------------------------------------------------------ analysis


def test_a_tenant_far_above_the_median_tenant_stands_out() -> None:
    report = _scheduler({"a": 10, "b": 12, "c": 11, "whale": 60, "tiny": 1})
    assert [(u.stats.tenant, u.reasons) for u in report.unusual] == [
        ("whale", ["5.5x the median tenant"])
    ]
    assert report.unusual[0].median == 11
    # Just under five times the median: nothing stands out.
    assert not _scheduler({"a": 10, "b": 12, "c": 11, "whale": 54}).unusual
    # Below --min-volume (10) nothing is unusual, however lopsided.
    assert not _scheduler({"a": 1, "b": 1, "c": 1, "d": 9}).unusual


def test_a_sudden_change_against_the_previous_period_stands_out() -> None:
    report = _scheduler(
        {"a": 30, "b": 10, "c": 10, "d": 12}, previous={"a": 10, "b": 10, "c": 31, "d": 11}
    )
    reasons = {u.stats.tenant: u.reasons for u in report.unusual}
    assert reasons == {"a": ["3.0x the previous period"], "c": ["32% of the previous period"]}


def test_a_previous_period_with_little_data_is_not_compared() -> None:
    prev = [
        Sample(_labels("schedule", "s", "a", q="resources"), 5.0),
        Sample(_labels("schedule", "s", "a", q="samples"), 60.0),
        Sample(_labels("schedule", "s", "a", q="previous_samples"), 20.0),  # a third covered
    ]
    report = _build(
        i_runs=[Sample(_labels("schedule", "s", "a", state="success"), 6.0)],
        i_resources=[Sample(_labels("schedule", "s", "a"), 100.0)],
        i_previous=prev,
    )
    tenant = report.jobs[0].tenants[0]
    assert tenant.previous_coverage() == pytest.approx(1 / 3)
    assert tenant.vs_previous() is None
    assert not report.unusual
    # Half covered: 5 resources over half the period count as 10 over all of it.
    tenant.previous_samples = 30.0
    assert tenant.vs_previous() == pytest.approx(100 / 10)


def test_zero_resources_only_for_schedulers_and_crons_that_succeeded() -> None:
    report = _build(
        i_runs=[
            Sample(_labels("schedule", "s", "empty", state="success"), 5.0),
            Sample(_labels("schedule", "s", "failed", state="failure"), 5.0),
            Sample(_labels("resource", "r", "idle", state="success"), 5.0),
        ],
        i_resources=[
            Sample(_labels("schedule", "s", "empty"), 0.0),
            Sample(_labels("schedule", "s", "failed"), 0.0),
            Sample(_labels("resource", "r", "idle"), 0.0),
        ],
    )
    assert [(z.job_name, z.tenant) for z in report.zero_resources] == [("s", "empty")]
    answer = {a.key: a for a in report.answers}["zero_resources"]
    assert answer.verdict == rp.WARN and "s / empty" in answer.summary


def _timed_job(runs: list[float], durations: list[float], resources: list[float]) -> rp.Report:
    job = _labels("batch", "b")
    return _build(
        i_runs=[Sample(_labels("batch", "b", "system", state="success"), sum(runs))],
        r_runs=[_series({**job, "state": "success"}, runs)],  # type: ignore[list-item]
        r_duration_sum=[_series(job, durations)],  # type: ignore[list-item]
        r_resources=[_series(job, resources)],  # type: ignore[list-item]
    )


def test_duration_growth_is_told_apart_slower_or_more_work() -> None:
    runs = [10.0] * 6
    # Same resources per run, each twice as long: slower.
    slower = _timed_job(runs, [1, 1, 1, 2, 2, 2], [100.0] * 6)
    trend = rp.duration_trend(slower.jobs[0], OPTS)
    assert trend is not None and trend.startswith("slower: mean duration 100ms -> 200ms (2.0x)")
    # Twice the resources per run, time per resource flat: more work.
    more = _timed_job(runs, [1, 1, 1, 2, 2, 2], [100, 100, 100, 200, 200, 200])
    trend = rp.duration_trend(more.jobs[0], OPTS)
    assert trend is not None and trend.startswith("more work:")
    assert "resources per run 10 -> 20" in trend
    # Under 20% growth: nothing to say.
    assert (
        rp.duration_trend(_timed_job(runs, [1, 1, 1, 1.1, 1.1, 1.1], [5.0] * 6).jobs[0], OPTS)
        is None
    )
    answer = {a.key: a for a in slower.answers}["duration"]
    assert answer.verdict == rp.WARN and answer.details[0].startswith("b: slower")


def test_failures_isolated_or_spread() -> None:
    def report(failures: dict[tuple[str, str], float]) -> rp.Answer:
        runs = []
        for (job, tenant), n in failures.items():
            runs.append(Sample(_labels("schedule", job, tenant, state="failure"), n))
            runs.append(Sample(_labels("schedule", job, tenant, state="success"), 100.0))
        return {a.key: a for a in _build(i_runs=runs).answers}["failures"]

    isolated = report({("s", "umbrella"): 18, ("s", "acme"): 1, ("t", "acme"): 1})
    assert isolated.summary.startswith("isolated: s / umbrella had 18 of 20 failures (90%)")
    one_job = report({("s", "a"): 5, ("s", "b"): 5, ("s", "c"): 8, ("t", "a"): 1})
    assert one_job.summary.startswith("isolated to one job: s had 18 of 19 failures")
    spread = report({("s", "a"): 5, ("t", "b"): 5, ("u", "c"): 5})
    assert spread.verdict == rp.BAD and spread.summary.startswith("spread: 15 failures")
    assert report({("s", "a"): 0}).summary == "no failures in the period"


def test_cron_runs_against_the_declared_interval_from_its_first_run() -> None:
    job = _labels("cron", "c")

    def cron(total: float, steps: list[float | None]) -> rp.Answer:
        report = _build(
            i_runs=[Sample(_labels("cron", "c", "system", state="success"), total)],
            i_cadence=[Sample({**job, "setting": "interval"}, 5.0)],
            r_runs=[_series({**job, "state": "success"}, steps)],  # type: ignore[list-item]
        )
        return {a.key: a for a in report.answers}["cron_runs"]

    full = cron(12, [2.0] * 6)  # every 5 s over 60 s: 12 expected
    assert full.verdict == rp.OK and "expected at least 12" in full.details[0]
    assert cron(10.7, [2.0] * 6).verdict == rp.BAD  # 89%
    # First seen in the fourth step: only 30 s (6 runs) were expected.
    late_start = cron(6, [None, None, None, 2.0, 2.0, 2.0])
    assert late_start.verdict == rp.OK and "expected at least 6" in late_start.details[0]


def test_alert_episodes_and_groups() -> None:
    labels = {"__name__": "ALERTS", "alertname": "JobTrackRunFailures", "alertstate": "firing",
              "job_name": "s", "tenant": "umbrella", "severity": "warning"}  # fmt: skip
    points = [(END - 30 + i, 1.0) for i in range(4)] + [(END - 10 + i, 1.0) for i in range(11)]
    episodes = rp.alert_episodes([Series(labels, points)], 1.0, END)
    assert [(e.start, e.end, e.seconds, e.ongoing) for e in episodes] == [
        (END - 31, END - 27, 4.0, False),
        (END - 11, END, 11.0, True),
    ]
    assert episodes[0].subject() == "s / umbrella"
    assert "alertstate" not in episodes[0].labels
    [group] = rp.alert_groups(episodes)
    assert (group.episodes, group.seconds, group.first, group.ongoing) == (2, 15.0, END - 31, True)


# ------------------------------------------------------------------------------ outputs


def _sample_report() -> rp.Report:
    job = _labels("schedule", "billing.schedule")
    report = _build(
        i_runs=[
            Sample(_labels("schedule", "billing.schedule", t, state="success"), 10.0)
            for t in ("acme", "globex", "hooli", "initech")
        ]
        + [Sample(_labels("schedule", "billing.schedule", "acme", state="failure"), 3.0)],
        i_resources=[
            Sample(_labels("schedule", "billing.schedule", t), v)
            for t, v in (("acme", 20.0), ("globex", 25.0), ("hooli", 400.0), ("initech", 0.0))
        ],
        i_duration_sum=[Sample(_labels("schedule", "billing.schedule", "acme"), 1.3)],
        r_runs=[_series({**job, "state": "success"}, [6, 7, 6, 7, 7, 7])],  # type: ignore[list-item]
        r_resources=[_series(job, [70, 75, 70, 80, 70, 80])],  # type: ignore[list-item]
        r_p95=[_series(job, [0.1, 0.2, None, 0.2, 0.3, 0.1])],  # type: ignore[list-item]
        r_alerts=[
            Series(
                {
                    "alertname": "JobTrackResourcesZero",
                    "alertstate": "firing",
                    "kind": "schedule",
                    "job_name": "billing.schedule",
                    "tenant": "initech",
                    "severity": "warning",
                },
                [(END - 5 + i, 1.0) for i in range(5)],
            )
        ],
    )
    report.url = "http://prometheus:9090"
    return report


def test_html_is_one_self_contained_page() -> None:
    page = rp.render_html(_sample_report())
    assert page.startswith("<!doctype html>")
    for pattern in (r"<script", r"\bsrc=", r"<link", r"url\(", r"@import", r"href="):
        assert not re.search(pattern, page, re.IGNORECASE), pattern
    assert page.count('<svg class="chart" data-chart="runs"') == 1
    assert 'data-chart="tenants"' in page and 'data-chart="alerts"' in page
    assert 'data-job="billing.schedule"' in page
    assert "hooli" in page and "JobTrackResourcesZero" in page
    # Text from the data is escaped.
    report = _sample_report()
    report.jobs[0].stats.job_name = "<b>x</b>"
    assert "<b>x</b>" not in rp.render_html(report)


def test_csv_has_a_row_per_job_and_tenant_with_the_documented_columns() -> None:
    rows = list(csv.DictReader(io.StringIO(rp.render_csv(_sample_report()))))
    assert tuple(rows[0]) == rp.CSV_COLUMNS
    assert [(r["scope"], r["tenant"]) for r in rows] == [
        ("job", ""), ("tenant", "hooli"), ("tenant", "globex"), ("tenant", "acme"),
        ("tenant", "initech"),
    ]  # fmt: skip
    job = rows[0]
    assert job["runs"] == "43" and job["failures"] == "3" and job["resources"] == "445"
    assert float(job["failure_share"]) == pytest.approx(3 / 43, rel=1e-5)
    assert job["period_start"] == "2023-11-14T22:12:20Z"
    assert rows[1]["finding"].endswith("the median tenant")
    assert rows[4]["finding"] == "ran, touched nothing"


def test_markdown_and_json() -> None:
    report = _sample_report()
    md = rp.render_markdown(report)
    assert md.startswith("# Recurring jobs, last 1m\n")
    assert "## Schedulers" in md and "| `billing.schedule` | 43 |" in md
    assert "▇█▇███" in md  # runs per step as a sparkline
    assert "| JobTrackResourcesZero | billing.schedule / initech | warning | 1 | 5s |" in md
    data = rp.to_json(report)
    json.dumps(data, allow_nan=False)
    assert data["headline"]["runs"] == 43
    assert data["jobs"][0]["steps"]["p95"][2] is None


def test_slack_payload() -> None:
    payload = rp.slack_payload(_sample_report())
    assert payload["text"].startswith("Recurring jobs, last 1m: 43 runs, 93% succeeded, 3 failed")
    header, fields, findings, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Recurring jobs, last 1m"},
    }
    assert {f["text"] for f in fields["fields"]} >= {"*Runs*\n43", "*Failed*\n3"}
    assert len(fields["fields"]) <= 10
    assert ":warning:" in findings["text"]["text"]
    assert len(findings["text"]["text"]) <= 3000
    assert "http://prometheus:9090" in context["elements"][0]["text"]


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(rp.ToolError, match="must be an http"):
        rp.post_webhook("hooks.example:443/x", {})


def test_charts_scale_to_the_largest_value() -> None:
    chart = svg.bars("runs", "Runs", TIMES, STEP, [("ok", "#0f0", [1, 2, None, 4, 0, 2])])
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', chart)
    ]
    assert len(heights) == 4  # no bar for missing or zero
    assert max(heights) == pytest.approx(120 - 18 - 18)
    assert heights[0] * 4 == pytest.approx(max(heights))
    line = svg.line("duration", "p95", TIMES, STEP, [0.1, None, 0.2, 0.3, None, 0.1], "#70f")
    # Gaps break the line: only the 0.2-0.3 stretch has two points to join.
    assert line.count("<polyline") == 1 and line.count("<circle") == 4


def test_chart_step_defaults() -> None:
    assert rp.choose_step(86400, None) == 1800
    assert rp.choose_step(600, None) == 60
    assert rp.choose_step(600, 5.0) == 5.0
    assert rp.alert_step(86400, 1800) == 87
    assert rp.alert_step(80, 5) == 1


def test_browser_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(browser.BROWSER_ENV, raising=False)
    assert browser.find_browser() is None
    with pytest.raises(browser.BrowserMissing) as exc:
        browser.require_browser(None, "--format pdf")
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("--format pdf needs a headless Chromium or Chrome")
    assert "apt-get install chromium" in message and "--format html" in message


def test_report_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--prometheus", "http://x", "--format", "docx"],
        ["--prometheus", "http://x", "--since", "0s"],
        ["--prometheus", "http://x", "--top", "0"],
        ["--prometheus", "http://x", "--unusual-ratio", "1"],
    ):
        with pytest.raises(SystemExit) as exc:
            rp.main(argv)
        assert exc.value.code == 2
    assert "invalid choice: 'docx'" in capsys.readouterr().err


def test_median_is_the_statistics_median() -> None:
    # The "unusual" median is the plain median of the tenants' volumes.
    report = _scheduler({"a": 1, "b": 100, "c": 10, "d": 20})
    assert statistics.median([1, 100, 10, 20]) == 15
    assert all(u.median == 15 for u in report.unusual)
