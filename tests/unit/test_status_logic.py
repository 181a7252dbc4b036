"""``otel-jobtrack status`` without a server: formatting, verdicts, ranking, colour, output.

The answers of a Prometheus API are written here as :class:`Sample` lists, the shape the
client returns, so every verdict and ranking rule is tested with numbers chosen to sit on
either side of its threshold. The real-server tests are in tests/backend/test_status_report.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable

import pytest

from otel_jobtrack.tools import _format as fmt
from otel_jobtrack.tools import status as st
from otel_jobtrack.tools.query import Re, Sample, any_of, label_matchers

NOW = 1_700_000_000.0


# ------------------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (0.0, "0s"),
        (0.0004, "<1ms"),
        (0.0123, "12ms"),
        (1.0, "1s"),
        (2.25, "2.2s"),
        (59.4, "59s"),
        (60.0, "1m"),
        (200.0, "3m20s"),
        (3600.0, "1h"),
        (7500.0, "2h05m"),
        (86400.0 * 3 + 3600 * 4, "3d4h"),
        (-90.0, "-1m30s"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0.0, "0"),
        (3.0, "3"),
        (0.4, "0.4"),
        (9.94, "9.9"),
        (9.96, "10"),
        (58.97, "59"),
        (12345.6, "12,346"),
    ],
)
def test_count_rounds_but_keeps_small_fractions(value: float | None, text: str) -> None:
    assert fmt.count(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0.0, "0%"), (0.004, "0.4%"), (0.0995, "10%"), (0.333, "33%"), (1.0, "100%")],
)
def test_share(value: float | None, text: str) -> None:
    assert fmt.share(value) == text


def test_sparkline_scales_to_the_largest_value_and_shows_gaps() -> None:
    assert fmt.sparkline([0, 1, 2, None, 4]) == "▁▃▅ █"
    assert fmt.sparkline([0, 0]) == "▁▁"
    assert fmt.sparkline([]) == ""


def test_table_aligns_on_visible_width_ignoring_colour() -> None:
    red = fmt.paint("FAIL", "red", True)
    lines = fmt.table(
        ["A", "NUM", "NOTE"], [[red, "1", "x"], ["OK", "1,000", "yy"]], [False, True, False]
    )
    assert [fmt.strip_ansi(line) for line in lines] == [
        "A       NUM  NOTE",
        "FAIL      1  x",
        "OK    1,000  yy",
    ]  # fmt: skip
    assert "\x1b[31mFAIL\x1b[0m" in lines[1]


def test_markdown_table_escapes_pipes() -> None:
    assert fmt.markdown_table(["a"], [["x|y"]])[-1] == "| x\\|y |"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert fmt.color_enabled(_Tty(), "auto")
    assert not fmt.color_enabled(io.StringIO(), "auto")  # a pipe or file
    assert fmt.color_enabled(io.StringIO(), "always")
    assert not fmt.color_enabled(_Tty(), "never")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not fmt.color_enabled(_Tty(), "auto")
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    assert fmt.color_enabled(_Tty(), "auto")
    monkeypatch.setenv("TERM", "dumb")
    assert not fmt.color_enabled(_Tty(), "auto")


# ------------------------------------------------------------------------------ PromQL text


def test_label_matchers_quote_values_and_keep_the_users_selector() -> None:
    assert label_matchers("", kind="cron", tenant=None) == '{kind="cron"}'
    text = label_matchers('job="billing"', job_name=Re("demo\\..*"), tenant='a"b')
    assert text == '{job_name=~"demo\\\\..*", tenant="a\\"b", job="billing"}'
    assert any_of(["cron", "a.b"]) == Re("cron|a\\.b")
    assert any_of([]) is None


def test_one_query_per_question_whatever_the_number_of_jobs() -> None:
    qs = st.queries(st.Options(window=3600, baseline=7 * 86400, tenants=False))
    assert set(qs) == {
        "last_run", "cadence", "runs", "usual_runs", "resources", "duration_sum", "p95",
        "in_progress",
    }  # fmt: skip
    assert "[7d:1h] offset 1h" in qs["usual_runs"]
    assert "sum by (kind, job_name) (increase(jobtrack_runs_total{}[1h]))" in qs["usual_runs"]
    assert "by (kind, job_name, le)" in qs["p95"]
    tenant_qs = st.queries(st.Options(tenants=True, kinds=("cron",), tenant="acme|globex"))
    assert "sum by (kind, job_name, tenant) (increase" in tenant_qs["usual_runs"]
    assert 'tenant=~"acme|globex"' in tenant_qs["runs"]
    # The cadence gauges have no tenant label: a tenant matcher there would drop them all.
    assert "tenant" not in tenant_qs["cadence"].replace("setting", "")
    assert 'kind=~"cron"' in tenant_qs["cadence"]


def test_prom_duration() -> None:
    assert st.prom_duration(3600) == "1h"
    assert st.prom_duration(90) == "1m30s"
    assert st.prom_duration(0.5) == "500ms"


# ------------------------------------------------------------------------------ verdicts


def _runs(kind: str, job: str, tenant: str, **states: float) -> list[Sample]:
    return [
        Sample({"kind": kind, "job_name": job, "tenant": tenant, "state": s}, v)
        for s, v in states.items()
    ]


def _last(kind: str, job: str, tenant: str, **states: float) -> list[Sample]:
    return [
        Sample({"kind": kind, "job_name": job, "tenant": tenant, "state": s}, NOW - age)
        for s, age in states.items()
    ]


def _cadence(kind: str, job: str, **settings: float) -> list[Sample]:
    return [
        Sample({"kind": kind, "job_name": job, "setting": name}, v) for name, v in settings.items()
    ]


def _answers(**parts: Iterable[Sample]) -> dict[str, list[Sample]]:
    names = (
        "last_run",
        "cadence",
        "runs",
        "usual_runs",
        "resources",
        "duration_sum",
        "p95",
        "in_progress",
    )
    return {name: list(parts.get(name, [])) for name in names}


def _codes(row: st.Row) -> set[str]:
    return {p.code for p in row.problems}


def _rows(answers: dict[str, list[Sample]], **opts: object) -> list[st.Row]:
    rows, _ = st.evaluate(answers, [], st.Options(**opts), NOW)  # type: ignore[arg-type]
    return rows


def test_overdue_against_declared_interval_plus_grace() -> None:
    def row(age: float, grace: float | None) -> st.Row:
        cad = {"interval": 300.0} if grace is None else {"interval": 300.0, "grace": grace}
        answers = _answers(
            runs=_runs("cron", "c", "system", success=3),
            last_run=_last("cron", "c", "system", success=age),
            cadence=_cadence("cron", "c", **cad),
        )
        return _rows(answers)[0]

    assert st.OVERDUE not in _codes(row(329, 30))
    assert st.OVERDUE in _codes(row(331, 30))
    # No grace declared: the rules' default (60 s) applies.
    assert st.OVERDUE not in _codes(row(359, None))
    overdue = row(361, None)
    assert st.OVERDUE in _codes(overdue)
    assert overdue.status == "OVERDUE"
    assert overdue.allowed_age == 360


def test_overdue_for_one_tenant_makes_the_job_row_overdue_and_names_it() -> None:
    answers = _answers(
        runs=_runs("schedule", "s", "acme", success=5)
        + _runs("schedule", "s", "globex", success=5),
        last_run=_last("schedule", "s", "acme", success=10)
        + _last("schedule", "s", "globex", success=500),
        cadence=_cadence("schedule", "s", interval=60, grace=10),
    )
    job_row = _rows(answers)[0]
    assert job_row.unit.tenants == 2
    assert job_row.status == "OVERDUE"
    overdue = next(p for p in job_row.problems if p.code == st.OVERDUE)
    assert overdue.text.startswith("globex last success")
    tenant_rows = _rows(answers, tenants=True)
    assert [(r.unit.tenant, r.status) for r in tenant_rows] == [
        ("globex", "OVERDUE"),
        ("acme", "OK"),
    ]


def test_inferred_interval_only_for_cron_and_schedule_jobs_of_one_series() -> None:
    def rows(kind: str, age: float, tenants: tuple[str, ...] = ("system",)) -> list[st.Row]:
        answers = _answers(
            runs=[s for t in tenants for s in _runs(kind, "j", t, success=2)],
            last_run=[s for t in tenants for s in _last(kind, "j", t, success=age)],
            usual_runs=[Sample({"kind": kind, "job_name": "j"}, 12.0)],  # every 5 min in 1h
        )
        return _rows(answers, window=3600.0, default_grace=60.0, inferred_factor=3.0)

    # Allowed: 3 x 300 s + 60 s grace.
    assert st.OVERDUE not in _codes(rows("cron", 959)[0])
    late = rows("cron", 961)[0]
    assert st.OVERDUE in _codes(late) and late.inferred_interval == 300
    assert "inferred" in next(p.text for p in late.problems if p.code == st.OVERDUE)
    # Workers run on demand: no inferred cadence.
    assert st.OVERDUE not in _codes(rows("resource", 5000)[0])
    # A job row over several tenants runs as often as all tenants together.
    assert st.OVERDUE not in _codes(rows("schedule", 5000, ("a", "b"))[0])


def test_failing_needs_enough_runs_or_no_success_since_the_last_failure() -> None:
    def row(
        success: float, failure: float, last_ok: float | None, last_fail: float | None
    ) -> st.Row:
        last = {}
        if last_ok is not None:
            last["success"] = last_ok
        if last_fail is not None:
            last["failure"] = last_fail
        answers = _answers(
            runs=_runs("batch", "b", "system", success=success, failure=failure, limited=0),
            last_run=_last("batch", "b", "system", **last),
        )
        return _rows(answers)[0]

    assert st.FAILING in _codes(row(8, 2, 5, 1))  # 20% of 10 runs
    assert st.FAILING not in _codes(row(9, 1, 5, 1))  # 10% is not above 10%
    assert st.FAILING not in _codes(row(96, 4, 5, 1))  # a frequent job's last run may fail
    # Too few runs for a share: failing only while nothing succeeded since the failure.
    assert st.FAILING in _codes(row(0, 1, 5000, 100))
    assert st.FAILING not in _codes(row(1, 1, 50, 100))
    assert st.FAILING in _codes(row(0, 0, None, 7200))  # no run in the window, last one failed
    assert row(0, 0, None, 7200).status == "FAILING"


def test_warnings_stuck_limited_below_usual_zero_resources() -> None:
    answers = _answers(
        runs=_runs("schedule", "s", "system", success=4, failure=0, limited=6),
        last_run=_last("schedule", "s", "system", success=1),
        cadence=_cadence("schedule", "s", interval=60, max_runtime=100),
        resources=[Sample({"kind": "schedule", "job_name": "s", "tenant": "system"}, 0.0)],
        usual_runs=[Sample({"kind": "schedule", "job_name": "s"}, 30.0)],
        in_progress=[
            Sample({"kind": "schedule", "job_name": "s", "tenant": "system", "q": "count"}, 1.0),
            Sample(
                {"kind": "schedule", "job_name": "s", "tenant": "system", "q": "oldest"}, NOW - 101
            ),
        ],
    )
    row = _rows(answers)[0]
    assert _codes(row) == {st.STUCK, st.LIMITED, st.BELOW_USUAL, st.ZERO_RESOURCES}
    assert row.status == "WARN"
    assert row.limited_share() == pytest.approx(0.6)


def test_rank_puts_overdue_and_failing_first_then_warnings_then_kind_order() -> None:
    answers = _answers(
        runs=_runs("batch", "ok-batch", "system", success=5)
        + _runs("cron", "ok-cron", "system", success=5)
        + _runs("schedule", "warn", "system", success=5, limited=10)
        + _runs("resource", "failing", "system", success=5, failure=5)
        + _runs("cron", "late", "system", success=5)
        + _runs("cron", "very-late", "system", success=5),
        last_run=_last("cron", "late", "system", success=200)
        + _last("cron", "very-late", "system", success=2000),
        cadence=_cadence("cron", "late", interval=100, grace=0)
        + _cadence("cron", "very-late", interval=100, grace=0),
    )
    names = [r.unit.job_name for r in _rows(answers)]
    # Worst first (20x overdue before 2x before failing), then warnings, then cron < batch.
    assert names == ["very-late", "late", "failing", "warn", "ok-cron", "ok-batch"]


def test_alerts_attach_to_their_job_and_the_rest_is_listed_apart() -> None:
    answers = _answers(runs=_runs("cron", "c", "system", success=5))
    alerts = [
        {"alertname": "JobTrackRunsBelowExpected", "kind": "cron", "job_name": "c"},
        {"alertname": "JobTrackExporterDown", "instance": "10.0.0.1:9464", "severity": "warning"},
    ]  # fmt: skip
    rows, other = st.evaluate(answers, alerts, st.Options(), NOW)
    assert rows[0].alerts == alerts[:1]
    assert [p.text for p in rows[0].problems if p.code == st.ALERT] == ["RunsBelowExpected"]
    assert other == alerts[1:]
    status = st.Status("http://p", NOW, st.Options(), rows, other, "series")
    assert status.exit_code() == 0  # alerts alone do not fail by default
    failing = st.Status("http://p", NOW, st.Options(fail_on=(st.ALERT,)), rows, other, "series")
    assert failing.exit_code() == 1


def test_text_and_json_output(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = _answers(
        runs=_runs("cron", "late", "system", success=5)
        + _runs("cron", "fine", "system", success=5),
        last_run=_last("cron", "late", "system", success=900)
        + _last("cron", "fine", "system", success=10),
        cadence=_cadence("cron", "late", interval=300, grace=60)
        + _cadence("cron", "fine", interval=300),
    )
    rows, other = st.evaluate(answers, [], st.Options(), NOW)
    status = st.Status("http://prom:9090", NOW, st.Options(), rows, other, "api")
    plain = st.render_text(status, color=False)
    assert "\x1b[" not in plain
    lines = plain.splitlines()
    assert lines[2].split()[:9] == [
        "STATUS", "KIND", "JOB", "LAST", "SUCCESS", "EVERY", "RUNS", "1h", "USUAL",
    ]  # fmt: skip
    assert lines[3].startswith("OVERDUE  cron  late ")
    assert "15m ago" in lines[3] and "5m+1m" in lines[3]
    assert lines[4].startswith("OK       cron  fine ")
    assert "2 jobs: 1 overdue, 0 failing, 0 with warnings" in plain
    coloured = st.render_text(status, color=True)
    assert "\x1b[1;31mOVERDUE\x1b[0m" in coloured
    assert fmt.strip_ansi(coloured) == plain
    data = st.to_json(status)
    assert data["exit_code"] == 1
    assert data["rows"][0]["status"] == "overdue"
    assert data["rows"][0]["last_success_age_seconds"] == 900
    assert data["rows"][0]["allowed_age_seconds"] == 360
    json.dumps(data, allow_nan=False)


def test_command_line_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--prometheus", "http://x", "--kind", "nightly"],
        ["--prometheus", "http://x", "--window", "soon"],
        ["--prometheus", "http://x", "--fail-on", "everything"],
        ["--prometheus", "http://x", "--window", "2h", "--baseline", "1h"],
        ["--prometheus", "http://x", "--at", "yesterday"],
    ):
        with pytest.raises(SystemExit) as exc:
            st.main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown kind 'nightly'" in err
    assert "not a Prometheus duration" in err


def test_show_queries_needs_no_server() -> None:
    out = io.StringIO()
    assert st.main(["--prometheus", "http://127.0.0.1:1", "--show-queries"], stdout=out) == 0
    assert "# usual_runs\nquantile_over_time(0.5" in out.getvalue()
    assert 'ALERTS{alertstate="firing", alertname=~"JobTrack.*"}' in out.getvalue()


def test_bad_url_is_a_clear_error() -> None:
    err = io.StringIO()
    assert st.main(["--prometheus", "prometheus:9090"], stderr=err) == 3
    assert "must be an http:// or https:// URL" in err.getvalue()


def test_parse_time() -> None:
    assert st.parse_time("1700000000.5") == 1700000000.5
    assert st.parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert st.parse_time("2023-11-14T22:13:20") == 1700000000.0
