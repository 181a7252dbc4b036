"""``status`` and ``report`` against a real Prometheus scraping the demo with injected faults.

One scenario for the whole module (about two minutes): the demo runs with a one-second cron
for ``HISTORY`` seconds, then its faults start (``otel-jobtrack demo --fault``): the inventory
cron stops (overdue), the cleanup job fails every run (failing), one billing cron run hangs
(stuck), the rollup gets four times slower (duration drift) and tenant ``acme`` gets eight times
more invoices (unusual volume). Prometheus evaluates the shipped rules, generated with windows
of seconds, so ``ALERTS`` has history. At ``AT`` the demo stops; every command runs with
``--at``/``--until AT`` and its numbers are compared with what the Prometheus API itself
answers for per-job queries written independently here.
"""

from __future__ import annotations

import csv
import dataclasses
import http.server
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_jobtrack.generators import rules
from otel_jobtrack.tools import _format as fmt
from otel_jobtrack.tools import browser
from otel_jobtrack.tools.demo import BILLING_CRON, CLEANUP, INVENTORY_CRON, ROLLUP
from tests.backends import (
    REPO_ROOT,
    BackendError,
    PrometheusServer,
    free_port,
    http_request,
)
from tests.rendering import ansi_to_html, pixel_stats, save_doc_image

pytestmark = [pytest.mark.backend, pytest.mark.slow]

HISTORY = 50.0
"""Seconds of normal behaviour: the previous period of the 40 s report, fully covered."""
FAULTY = 40.0
WINDOW = 20.0
BASELINE = 40.0
FAULTS = (
    f"stop:{INVENTORY_CRON}@{HISTORY:g}",
    f"fail:{CLEANUP}=1@{HISTORY:g}",
    f"hang:{BILLING_CRON}@{HISTORY:g}",
    f"slow:{ROLLUP}=4@{HISTORY:g}",
    f"surge:acme=8@{HISTORY:g}",
)
STATUS_ARGS = (
    "--window", f"{WINDOW:g}s", "--baseline", f"{BASELINE:g}s", "--lookback", "10m",
    "--default-grace", "1s",
)  # fmt: skip
RULES_CONFIG = dataclasses.replace(
    rules.DEFAULT_CONFIG,
    interval="1s",
    rate_window="3s",
    alert_window="5s",
    baseline_window="15s",
    lookback="2m",
    default_grace_seconds=1.0,
    volume_min_resources=50.0,
    drift_min_increase_seconds=0.1,
    for_durations={name: "0s" for name in rules.ALERT_NAMES},
    kubernetes=False,
)
PASSWORD = "correct-horse"
# bcrypt of PASSWORD, cost 4 (Prometheus' web config takes only bcrypt hashes); made with
# crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).
PASSWORD_HASH = "$2b$04$JuVwWkeff.Ziv.CiVh0m0.AiUCxDYsX9uy/iqEckPBwp3bTp7tGYG"


@dataclass
class Scenario:
    prom: PrometheusServer
    started: float
    at: float
    """Evaluation time of the status commands: a few seconds before the demo stopped."""

    @property
    def faults_at(self) -> float:
        """When the faults began (the demo's clock starts as it prints its address)."""
        return self.started + HISTORY

    @property
    def report_end(self) -> float:
        """End of the 80 s report: 40 s before the faults and 40 s with them."""
        return round(self.faults_at + FAULTY, 3)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_jobtrack", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _aligned_at(earliest: float, step: float) -> float:
    """The first time after ``earliest`` that is ``step/2 + 0.5`` past a multiple of ``step``:
    no subquery step then falls on a window's edge, where inclusive and exclusive differ."""
    offset = step / 2 + 0.5
    return math.ceil((earliest - offset) / step) * step + offset


@pytest.fixture(scope="module")
def scenario(
    backend_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("status-report")
    rule_dir = workdir / "rules"
    rules.write(rule_dir, RULES_CONFIG)
    port = free_port()
    fault_args = [a for spec in FAULTS for a in ("--fault", spec)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "otel_jobtrack", "demo", "--host", "127.0.0.1",
         "--port", str(port), "--cron-interval", "1", "--seed", "7", *fault_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
    )  # fmt: skip
    prom = PrometheusServer(
        scrape_targets={"demo": [f"127.0.0.1:{port}"]},
        rule_files=[rule_dir / rules.RULES_FILE],
        workdir=workdir / "prometheus",
    )
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        assert "serving metrics" in first, first
        started = time.time()
        prom.start()
        prom.wait_for_targets_up()
        at = _aligned_at(started + HISTORY + FAULTY, WINDOW)
        time.sleep(max(0.0, at + 3 - time.time()))
        assert demo.poll() is None, "the demo died during the scenario"
        yield Scenario(prom, started, at)
    finally:
        if demo.poll() is None:
            demo.terminate()
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        prom.stop()


def _one(prom: PrometheusServer, promql: str, at: float) -> float | None:
    value = prom.query_value(promql, time=at)
    return None if value is None or math.isnan(value) else value


def _close(a: float | None, b: float | None, what: str) -> None:
    if a is None or b is None:
        assert a == b, f"{what}: {a} != {b}"
    else:
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), what


def _status(scenario: Scenario, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = _cli(
        "status", "--prometheus", scenario.prom.url, "--json", "--at", f"{scenario.at}",
        *STATUS_ARGS, *extra,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


# ------------------------------------------------------------------------------ status


def test_status_numbers_are_prometheus_answers_and_faults_are_found(scenario: Scenario) -> None:
    code, data = _status(scenario)
    assert code == 1, "an overdue and a failing job must fail the command"
    assert data["exit_code"] == 1
    rows = {r["job_name"]: r for r in data["rows"]}
    assert set(rows) == {
        "demo.billing.cron.schedule_invoices", "demo.inventory.cron.schedule_sync",
        "demo.billing.tenants.schedule_invoices", "demo.inventory.tenants.schedule_sync",
        "demo.maintenance.cleanup_sessions", "demo.billing.sync_invoice_batch",
        "demo.inventory.sync_item", "demo.reports.rollup",
    }  # fmt: skip
    prom, at, w = scenario.prom, scenario.at, f"{WINDOW:g}s"
    checked = 0
    for job, row in rows.items():
        sel = f'job_name="{job}"'
        _close(
            row["runs"],
            _one(prom, f"sum(increase(jobtrack_runs_total{{{sel}}}[{w}]))", at),
            f"{job} runs",
        )
        for state, key in (
            ("success", "successes"),
            ("failure", "failures"),
            ("limited", "limited"),
        ):
            expected = _one(
                prom, f'sum(increase(jobtrack_runs_total{{{sel},state="{state}"}}[{w}]))', at
            )
            _close(row[key], expected, f"{job} {state}")
        _close(
            row["resources"],
            _one(prom, f"sum(increase(jobtrack_resources_total{{{sel}}}[{w}]))", at),
            f"{job} resources",
        )
        p95 = _one(
            prom,
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(jobtrack_run_duration_seconds_bucket{{{sel}}}[{w}])))",
            at,
        )
        _close(row["p95_duration_seconds"], p95, f"{job} p95")
        last = _one(prom, f'max(jobtrack_last_run_timestamp_seconds{{{sel},state="success"}})', at)
        _close(row["last_success"], last, f"{job} last success")
        _close(
            row["runs_in_progress"],
            _one(prom, f"sum(jobtrack_runs_in_progress{{{sel}}})", at),
            f"{job} in progress",
        )
        # The usual: median of the window-long counts at the subquery's aligned steps.
        first = math.ceil((at - WINDOW - BASELINE) / WINDOW) * WINDOW
        last_step = math.floor((at - WINDOW) / WINDOW) * WINDOW
        series = prom.query_range(
            f"sum(increase(jobtrack_runs_total{{{sel}}}[{w}]))", first, last_step, f"{WINDOW:g}s"
        )
        values = [float(v) for _, v in series[0]["values"]] if series else []
        _close(row["usual_runs"], statistics.median(values) if values else None, f"{job} usual")
        if row["resources"]:
            _close(row["seconds_per_resource"], row["duration_seconds_sum"] / row["resources"], job)
        checked += 1
    assert checked == 8

    # The injected faults, each found by the verdict meant for it.
    def codes(job: str) -> set[str]:
        return {p["code"] for p in rows[job]["problems"]}

    assert "overdue" in codes(INVENTORY_CRON)
    assert rows[INVENTORY_CRON]["status"] == "overdue"
    assert rows[INVENTORY_CRON]["last_success_age_seconds"] > 30
    assert rows[INVENTORY_CRON]["allowed_age_seconds"] == 3  # every 2 s + 1 s grace
    assert "failing" in codes(CLEANUP)
    assert rows[CLEANUP]["failure_share"] == 1.0
    assert "stuck" in codes(BILLING_CRON)
    assert rows[BILLING_CRON]["runs_in_progress"] >= 1
    assert rows[BILLING_CRON]["oldest_run_age_seconds"] > 30
    assert "zero-resources" in codes("demo.billing.tenants.schedule_invoices")  # initech
    # Firing alerts at AT come from the ALERTS series and land on their rows.
    assert data["alert_source"] == "series"
    assert "JobTrackMissedRun" in rows[INVENTORY_CRON]["alerts"]
    assert "JobTrackRunStuck" in rows[BILLING_CRON]["alerts"]
    alerts_at = scenario.prom.query(
        'ALERTS{alertstate="firing", alertname=~"JobTrack.*"}', time=scenario.at
    )
    by_job: dict[str, set[str]] = {}
    for a in alerts_at:
        if "job_name" in a["metric"]:
            by_job.setdefault(a["metric"]["job_name"], set()).add(a["metric"]["alertname"])
    assert {j: set(r["alerts"]) for j, r in rows.items() if r["alerts"]} == by_job
    # Problems first: every overdue or failing row before every other.
    ranks = [r["status"] in ("overdue", "failing") for r in data["rows"]]
    assert ranks == sorted(ranks, reverse=True)
    assert data["summary"]["overdue"] >= 1 and data["summary"]["failing"] >= 1


def test_status_per_tenant_with_filters(scenario: Scenario) -> None:
    code, data = _status(scenario, "--tenants", "--kind", "schedule", "--tenant", "acme|umbrella")
    rows = data["rows"]
    assert {(r["job_name"], r["tenant"]) for r in rows} == {
        ("demo.billing.tenants.schedule_invoices", "acme"),
        ("demo.billing.tenants.schedule_invoices", "umbrella"),
        ("demo.inventory.tenants.schedule_sync", "acme"),
        ("demo.inventory.tenants.schedule_sync", "umbrella"),
    }
    w = f"{WINDOW:g}s"
    for r in rows:
        sel = f'job_name="{r["job_name"]}", tenant="{r["tenant"]}"'
        for state, key in (("success", "successes"), ("failure", "failures")):
            expected = _one(
                scenario.prom,
                f'sum(increase(jobtrack_runs_total{{{sel},state="{state}"}}[{w}]))',
                scenario.at,
            )
            _close(r[key], expected, f"{r['job_name']}/{r['tenant']} {state}")
        # The verdict follows the numbers: failing iff >= 3 runs and over 10% failed.
        failing = "failing" in {p["code"] for p in r["problems"]}
        if r["runs"] >= 3:
            assert failing == (r["failure_share"] > 0.1), r
    assert code == (1 if any(r["status"] in ("overdue", "failing") for r in rows) else 0)
    proc = _cli("status", "--prometheus", scenario.prom.url, "--job", "no-such-job")
    assert proc.returncode == 4
    assert "no jobtrack_* series matching --job no-such-job" in proc.stderr
    assert "without the filters" in proc.stderr


def test_status_on_a_terminal_is_coloured_and_plain_in_a_pipe(
    scenario: Scenario, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base = ("status", "--prometheus", scenario.prom.url, "--at", f"{scenario.at}", *STATUS_ARGS)
    coloured = _cli(*base, "--color", "always")
    assert coloured.returncode == 1
    lines = coloured.stdout.splitlines()
    assert lines[3].startswith("\x1b[1;31mOVERDUE\x1b[0m")
    piped = _cli(*base)  # auto: stdout is a pipe here
    assert "\x1b[" not in piped.stdout
    assert fmt.strip_ansi(coloured.stdout) == piped.stdout
    no_color = _cli(*base, "--color", "auto", env={"NO_COLOR": "1"})
    assert "\x1b[" not in no_color.stdout
    # The README picture: the coloured output as a terminal shows it.
    found = browser.find_browser()
    if found is None:
        pytest.skip("Chromium is not installed (scripts/install-system-packages installs it)")
    page = tmp_path / "status.html"
    page.write_text(ansi_to_html(coloured.stdout, "$ otel-jobtrack status --prometheus ..."))
    png = tmp_path / "status.png"
    longest = max(len(line) for line in piped.stdout.splitlines())
    browser.screenshot(page, png, found, width=8 * longest + 60)  # 13px DejaVu Sans Mono
    stats = pixel_stats(png, (0x1E, 0x1F, 0x22))
    assert stats["non_background"] > 0.02
    assert stats["light_red"] > 100, "the overdue and failing rows are red"
    save_doc_image(request, png, "status-terminal.png")


def test_status_now_reads_firing_alerts_from_the_api(scenario: Scenario) -> None:
    def firing() -> set[tuple[str, str]]:
        return {
            (a["labels"]["job_name"], a["labels"]["alertname"])
            for a in scenario.prom.alerts()
            if a["state"] == "firing"
            and a["labels"]["alertname"].startswith("JobTrack")
            and "job_name" in a["labels"]
        }

    # Alerts with second-long windows come and go: compare with the API before and after.
    before = firing()
    proc = _cli("status", "--prometheus", scenario.prom.url, "--json", *STATUS_ARGS)
    after = firing()
    data = json.loads(proc.stdout)
    assert data["alert_source"] == "api"
    shown = {(r["job_name"], name) for r in data["rows"] for name in r["alerts"]}
    assert before & after <= shown <= before | after
    assert (INVENTORY_CRON, "JobTrackMissedRun") in shown


# ------------------------------------------------------------------------------ report


def _report(
    scenario: Scenario, since: str, *extra: str, until: float | None = None
) -> subprocess.CompletedProcess[str]:
    end = scenario.report_end if until is None else until
    return _cli(
        "report", "--prometheus", scenario.prom.url, "--since", since,
        "--until", f"{end}", "--step", "5s", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def report_80s(scenario: Scenario) -> dict[str, Any]:
    """The report over the last 80 s: 40 s normal, then 40 s of faults."""
    proc = _report(scenario, "80s", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_report_numbers_are_prometheus_answers(
    scenario: Scenario, report_80s: dict[str, Any]
) -> None:
    prom, at, data = scenario.prom, scenario.report_end, report_80s
    assert data["end"] == at and data["start"] == at - 80
    for job in data["jobs"]:
        sel = f'job_name="{job["job_name"]}"'
        _close(
            job["total_runs"],
            _one(prom, f"sum(increase(jobtrack_runs_total{{{sel}}}[80s]))", at),
            sel,
        )
        _close(
            job["resources"],
            _one(prom, f"sum(increase(jobtrack_resources_total{{{sel}}}[80s]))", at),
            sel,
        )
        p95 = _one(
            prom,
            "histogram_quantile(0.95, sum by (le) "
            f"(increase(jobtrack_run_duration_seconds_bucket{{{sel}}}[80s])))",
            at,
        )
        _close(job["p95_duration_seconds"], p95, f"{sel} p95")
        for tenant in job["tenants"]:
            tsel = f'{sel}, tenant="{tenant["tenant"]}"'
            failures = _one(
                prom, f'sum(increase(jobtrack_runs_total{{{tsel},state="failure"}}[80s]))', at
            )
            _close(tenant["runs"].get("failure"), failures, f"{tsel} failures")
        # The chart's bars: one increase() per 5 s step, at the report's times.
        series = prom.query_range(
            f"sum by (state) (increase(jobtrack_runs_total{{{sel}}}[5s]))",
            data["times"][0], data["times"][-1], "5s",
        )  # fmt: skip
        for s in series:
            expected = {round(float(t), 3): float(v) for t, v in s["values"]}
            got = job["steps"][s["metric"]["state"]]
            for t, v in zip(data["times"], got, strict=True):
                _close(v, expected.get(round(t, 3)), f"{sel} {s['metric']['state']} at {t}")
    totals = data["headline"]
    _close(totals["runs"], _one(prom, "sum(increase(jobtrack_runs_total[80s]))", at), "all runs")
    _close(
        totals["failures"],
        _one(prom, 'sum(increase(jobtrack_runs_total{state="failure"}[80s]))', at),
        "failures",
    )


def test_report_alerts_and_for_how_long(scenario: Scenario, report_80s: dict[str, Any]) -> None:
    """Firing time per alert, against the raw ALERTS samples (one per 1 s evaluation)."""
    episodes = report_80s["alerts"]
    assert episodes, "the faults fire alerts"
    names = {e["alertname"] for e in episodes}
    assert {"JobTrackMissedRun", "JobTrackRunStuck", "JobTrackRunFailures"} <= names
    total: dict[tuple[tuple[str, str], ...], float] = {}
    for e in episodes:
        key = tuple(sorted({**e["labels"], "alertname": e["alertname"]}.items()))
        total[key] = total.get(key, 0.0) + e["seconds"]
        assert e["start"] >= report_80s["start"] - 1 and e["end"] <= report_80s["end"]
    samples = scenario.prom.query(
        'count_over_time(ALERTS{alertstate="firing", alertname=~"JobTrack.*"}[80s])',
        time=scenario.report_end,
    )
    raw = {
        tuple(sorted((k, v) for k, v in s["metric"].items() if k != "alertstate")): float(
            s["value"][1]
        )
        for s in samples
    }
    assert set(total) == set(raw)
    for key, seconds in total.items():
        # Each evaluation every 1 s writes one sample; the report's step is 1 s.
        assert abs(seconds - raw[key]) <= 3, (key, seconds, raw[key])
    stuck = [e for e in episodes if e["alertname"] == "JobTrackRunStuck"]
    assert stuck[-1]["ongoing"] and stuck[-1]["labels"]["job_name"] == BILLING_CRON


def test_report_answers_the_questions(scenario: Scenario, report_80s: dict[str, Any]) -> None:
    answers = {a["key"]: a for a in report_80s["answers"]}
    assert list(answers) == [
        "cron_runs", "found_tenants", "zero_resources", "unusual_tenants", "failures", "duration",
    ]  # fmt: skip
    assert answers["cron_runs"]["verdict"] == "bad"
    assert INVENTORY_CRON in answers["cron_runs"]["summary"]
    assert answers["zero_resources"]["verdict"] == "warn"
    assert "initech" in answers["zero_resources"]["summary"]
    # The rollup got four times slower with the same resources per run.
    slower = [d for d in answers["duration"]["details"] if d.startswith(ROLLUP)]
    assert slower and ": slower" in slower[0], answers["duration"]
    jobs = {j["job_name"]: j for j in report_80s["jobs"]}
    assert jobs[INVENTORY_CRON]["verdict"] == "bad"
    # hooli is about ten times the other tenants of the billing scheduler.
    unusual = {(u["job_name"], u["tenant"]) for u in report_80s["unusual_tenants"]}
    assert ("demo.billing.tenants.schedule_invoices", "hooli") in unusual

    # Over 36 s of faults, against the 36 s before them: acme's surge stands out.
    proc = _report(scenario, "36s", "--format", "json", until=scenario.faults_at + 38)
    assert proc.returncode == 0, proc.stderr
    last40 = json.loads(proc.stdout)
    acme = [
        u
        for u in last40["unusual_tenants"]
        if u["tenant"] == "acme" and u["job_name"] == "demo.billing.tenants.schedule_invoices"
    ]
    assert acme and acme[0]["vs_previous"] > 3, last40["unusual_tenants"]
    quiet = [
        u
        for u in last40["unusual_tenants"]
        if u["job_name"] == "demo.billing.tenants.schedule_invoices"
        and u["tenant"] in ("globex", "soylent")
    ]
    assert not quiet, "tenants without a fault did not change"
    crons = {j["job_name"]: j for j in last40["jobs"] if j["kind"] == "cron"}
    assert crons[INVENTORY_CRON]["total_runs"] < 1  # stopped for the whole period


def test_report_csv_and_markdown(scenario: Scenario, report_80s: dict[str, Any]) -> None:
    proc = _report(scenario, "80s", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    jobs = {j["job_name"]: j for j in report_80s["jobs"]}
    job_rows = [r for r in rows if r["scope"] == "job"]
    assert {r["job_name"] for r in job_rows} == set(jobs)
    for r in job_rows:
        j = jobs[r["job_name"]]
        assert float(r["runs"]) == pytest.approx(j["total_runs"], rel=1e-5)
        assert float(r["resources"]) == pytest.approx(j["resources"], rel=1e-5)
    tenant_rows = [r for r in rows if r["scope"] == "tenant"]
    assert len(tenant_rows) == sum(len(j["tenants"]) for j in jobs.values())
    assert any("median tenant" in r["finding"] for r in tenant_rows if r["tenant"] == "hooli")
    md = _report(scenario, "80s", "--format", "md")
    assert md.returncode == 0
    for answer in report_80s["answers"]:
        assert answer["question"] in md.stdout
    assert "## Cron triggers" in md.stdout and f"`{INVENTORY_CRON}`" in md.stdout


def _need_browser() -> str:
    found = browser.find_browser()
    if found is None:
        pytest.skip(
            "Chromium is not installed and scripts/install-system-packages could not install "
            "it (apt-get install chromium)"
        )
    return found


def test_html_report_renders_in_chromium(
    scenario: Scenario, report_80s: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page = tmp_path / "report.html"
    proc = _report(scenario, "80s", "--format", "html", "--output", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    # One self-contained file: nothing to fetch, nothing to run.
    for pattern in (r"<script", r"\bsrc=", r"<link", r"url\(", r"@import", r"href=\"http"):
        assert not re.search(pattern, text, re.IGNORECASE), pattern
    found = _need_browser()
    dom = browser.dump_dom(page, found)
    jobs = [j["job_name"] for j in report_80s["jobs"]]
    charts = re.findall(r'<svg class="chart" data-chart="(\w+)"', dom)
    assert (
        charts.count("runs") == charts.count("resources") == charts.count("duration") == len(jobs)
    )
    assert charts.count("alerts") == 1
    assert len(re.findall(r"<rect ", dom)) > 20 * len(jobs), "bars were drawn"
    for job in jobs:
        assert f'data-job="{job}"' in dom
    png = tmp_path / "report.png"
    browser.screenshot(page, png, found)
    stats = pixel_stats(png, (255, 255, 255))
    assert stats["width"] == 1200 and stats["height"] > 2000
    assert stats["non_background"] > 0.05, stats
    assert stats["green"] > 2000 and stats["blue"] > 2000, stats  # run and resource bars
    assert stats["red"] > 50 and stats["purple"] > 50, stats  # failures, duration lines
    save_doc_image(request, png, "report.png", crop_height=1700)


def test_png_and_pdf_formats(scenario: Scenario, tmp_path: Path) -> None:
    _need_browser()
    png = tmp_path / "r.png"
    proc = _report(scenario, "80s", "--format", "png", "--output", str(png))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {png}" in proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixel_stats(png, (255, 255, 255))["height"] > 2000
    pdf = tmp_path / "r.pdf"
    proc = _report(scenario, "80s", "--format", "pdf", "--output", str(pdf))
    assert proc.returncode == 0, proc.stderr
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2


def test_png_without_a_browser_is_one_clear_line(scenario: Scenario, tmp_path: Path) -> None:
    proc = _report(
        scenario, "80s", "--format", "png", "--output", str(tmp_path / "x.png"),
        "--browser", str(tmp_path / "no-chromium"),
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1
    assert "needs a headless Chromium or Chrome" in proc.stderr
    assert "apt-get install chromium" in proc.stderr
    assert not (tmp_path / "x.png").exists()


class _Receiver:
    """A local webhook: records each POSTed JSON body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        self.status = status
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                owner.bodies.append(
                    (self.headers.get("Content-Type"), json.loads(self.rfile.read(length)))
                )
                self.send_response(owner.status)
                self.end_headers()
                self.wfile.write(b"ok" if owner.status == 200 else b"no_service")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_gets_a_slack_summary(scenario: Scenario, report_80s: dict[str, Any]) -> None:
    receiver = _Receiver()
    try:
        proc = _report(scenario, "80s", "--format", "md", "--webhook", receiver.url)
        assert proc.returncode == 0, proc.stderr
        assert "posted the summary" in proc.stderr
    finally:
        receiver.close()
    [(content_type, payload)] = receiver.bodies
    assert content_type == "application/json"
    h = report_80s["headline"]
    assert payload["text"].startswith("Recurring jobs, last 1m20s: ")
    assert f"{fmt.count(h['runs'])} runs" in payload["text"]
    assert f"{h['alerts_fired']} alert(s) fired" in payload["text"]
    header, fields, findings, context = payload["blocks"]
    assert header["type"] == "header"
    values = {
        f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in fields["fields"]
    }
    assert values["Runs"] == fmt.count(h["runs"])
    assert values["Failed"] == fmt.count(h["failures"])
    assert values["Alerts fired"] == str(h["alerts_fired"])
    assert "Did each cron run as often as expected?" in findings["text"]["text"]
    assert scenario.prom.url in context["elements"][0]["text"]

    failing = _Receiver(status=500)
    try:
        proc = _report(scenario, "80s", "--format", "csv", "--webhook", failing.url)
    finally:
        failing.close()
    assert proc.returncode == 3
    assert "webhook http://127.0.0.1:" in proc.stderr and "answered HTTP 500" in proc.stderr
    assert "T000" not in proc.stderr, "the webhook's secret path is not printed"


# ------------------------------------------------------------------------------ errors


def test_unreachable_url(scenario: Scenario) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for cmd in (("status",), ("report", "--format", "md")):
        proc = _cli(*cmd, "--prometheus", url)
        assert proc.returncode == 3
        assert (
            proc.stderr
            == f"otel-jobtrack {cmd[0]}: cannot reach {url}: connection refused (is it running?)\n"
        )


def test_not_a_prometheus(tmp_path: Path) -> None:
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Grafana login</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = _cli("status", "--prometheus", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 3
    assert "did not answer with Prometheus API JSON (HTTP 200, text/html)" in proc.stderr


def test_no_jobtrack_data_and_a_period_without_data(
    scenario: Scenario, prometheus: PrometheusServer
) -> None:
    proc = _cli("status", "--prometheus", prometheus.url)
    assert proc.returncode == 4
    assert "no jobtrack_* series at" in proc.stderr
    assert "is it scraping an otel-jobtrack /metrics endpoint?" in proc.stderr
    proc = _cli("report", "--prometheus", prometheus.url, "--format", "md")
    assert proc.returncode == 4 and "no jobtrack_* data at" in proc.stderr
    # The scenario's Prometheus has data, but not an hour before the demo started.
    before = scenario.started - 3600
    proc = _cli(
        "report", "--prometheus", scenario.prom.url, "--since", "30m", "--until", f"{before}"
    )
    assert proc.returncode == 4
    assert "no jobtrack_* data at" in proc.stderr and "between" in proc.stderr
    assert proc.stdout == ""


class _SecuredPrometheus(PrometheusServer):
    """Prometheus with a web config (TLS and basic auth): readiness needs both."""

    def __init__(self, web_config: Path, ca: Path, **kwargs: Any) -> None:
        super().__init__(extra_args=[f"--web.config.file={web_config}"], **kwargs)
        self.ca = ca

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        import base64
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca))
        auth = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BackendError(f"prometheus exited: {self.log_tail()}")
            request = urllib.request.Request(
                self.url + "/-/ready", headers={"Authorization": f"Basic {auth}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise BackendError(f"secured prometheus not ready: {self.log_tail()}")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def secured_prometheus(
    backend_bins: dict[str, Path], tmp_path: Path
) -> Iterator[_SecuredPrometheus]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp_path,
    )  # fmt: skip
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "server.ext",
        "-out", "server.pem", cwd=tmp_path,
    )  # fmt: skip
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(tmp_path / "server.pem"),
                    "key_file": str(tmp_path / "server.key"),
                },
                "basic_auth_users": {"ops": PASSWORD_HASH},
            }
        )
    )
    server = _SecuredPrometheus(web, tmp_path / "ca.pem", workdir=tmp_path / "prom")
    server.start()
    yield server
    server.stop()


def test_credentials_and_tls(secured_prometheus: _SecuredPrometheus, tmp_path: Path) -> None:
    url, ca = secured_prometheus.url, str(secured_prometheus.ca)
    wrong = _cli(
        "status", "--prometheus", url, "--ca-file", ca, "--user", "ops", "--password", "nope"
    )
    assert wrong.returncode == 3
    assert "answered 401 Unauthorized: the credentials were refused" in wrong.stderr
    anonymous = _cli("status", "--prometheus", url, "--ca-file", ca)
    assert anonymous.returncode == 3 and "it needs credentials" in anonymous.stderr
    untrusted = _cli("status", "--prometheus", url, "--user", "ops", "--password", PASSWORD)
    assert untrusted.returncode == 3
    assert "TLS certificate of" in untrusted.stderr and "--ca-file" in untrusted.stderr
    # Right credentials: the server answers, and has no job data (exit 4, not 3).
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    right = _cli("status", "--prometheus", url, "--ca-file", ca, "--user", "ops",
                 "--password-file", str(secret))  # fmt: skip
    assert right.returncode == 4, right.stderr
    from_env = _cli(
        "report", "--prometheus", f"https://ops@127.0.0.1:{secured_prometheus.port}",
        "--insecure", "--format", "md", env={"JOBTRACK_PROMETHEUS_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert from_env.returncode == 4, from_env.stderr


def test_bearer_token_through_a_proxy(scenario: Scenario) -> None:
    """A token-checking proxy in front of the scenario's Prometheus (as Mimir or a gateway)."""
    upstream = scenario.prom.url

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Bearer t0ken":
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b'{"status":"error","error":"invalid token"}')
                return
            status, body = http_request("GET", upstream + self.path, timeout=60)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        base = ("status", "--prometheus", proxy, "--json", "--at", f"{scenario.at}", *STATUS_ARGS)
        good = _cli(*base, "--bearer-token", "t0ken")
        bad = _cli(*base, env={"JOBTRACK_PROMETHEUS_TOKEN": "wrong"})
    finally:
        server.shutdown()
        server.server_close()
    direct_code, direct = _status(scenario)
    assert good.returncode == direct_code == 1
    assert json.loads(good.stdout)["rows"] == direct["rows"]
    assert bad.returncode == 3 and "401 Unauthorized: the credentials were refused" in bad.stderr


@pytest.mark.parametrize("fmt_name", ["md", "csv", "json", "html"])
def test_report_to_a_file(scenario: Scenario, tmp_path: Path, fmt_name: str) -> None:
    out = tmp_path / f"r.{fmt_name}"
    proc = _report(scenario, "80s", "--format", fmt_name, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert out.stat().st_size > 1000
