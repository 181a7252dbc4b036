"""``otel-jobtrack bench``: the machinery runs end to end and its summary line parses.

Tiny iteration counts: this checks that every scenario runs (subprocesses, multiprocess
directory, threads, scrape workers) and reports sane numbers, not how fast anything is.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from otel_jobtrack.tools import bench

SUMMARY_KEYS = {
    "prom_track_run",
    "prom_tracked",
    "otlp",
    "multiprocess",
    "threads_prom",
    "threads_otlp",
    "scrape_40",
    "mem_per_series_bytes",
    "mem_vs_naive",
}


def test_tiny_run_prints_every_scenario_and_a_parsable_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nHow to read this.\n")
    argv = [
        "--quick",
        "--reps",
        "2",
        "--batch-seconds",
        "0.002",
        "--threads",
        "2",
        "--scales",
        "40",
        "--scrape-seconds",
        "0.001",
        "--write-docs",
        str(doc),
    ]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()

    summary = bench.parse_summary(lines[-1])
    assert set(summary) == SUMMARY_KEYS
    ratios = {k: v for k, v in summary.items() if not k.startswith("mem_")}
    assert all(math.isfinite(v) and v > 0 for v in ratios.values()), summary
    report = "\n".join(lines)
    for title in ("Prometheus path", "OTLP path", "PROMETHEUS_MULTIPROC_DIR", "2 threads"):
        assert title in report
    assert "both expositions hold the same samples" in report
    verdicts = [line.split()[-1] for line in lines if line.lstrip().startswith("=> ")]
    assert len(verdicts) == 7  # 4 per-run, 2 threads (no target), 1 scrape
    assert set(verdicts) <= {"PASS", "MISS", "info"} and verdicts.count("info") == 2

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nHow to read this.\n")
    assert text.count(bench.DOCS_START) == 1 and text.count(bench.DOCS_END) == 1
    assert lines[-1] in text


def test_write_docs_replaces_only_the_generated_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"intro\n\n{bench.DOCS_START}\nold results\n{bench.DOCS_END}\n\nafterword\n")
    bench.write_docs(str(doc), f"{bench.DOCS_START}\nnew results\n{bench.DOCS_END}")
    bench.write_docs(str(doc), f"{bench.DOCS_START}\nnewer results\n{bench.DOCS_END}")
    text = doc.read_text()
    assert text == f"intro\n\n{bench.DOCS_START}\nnewer results\n{bench.DOCS_END}\n\nafterword\n"


def test_report_marks_missed_targets_and_ends_with_the_summary() -> None:
    results = bench.Results(plan=bench.QUICK, machine=bench.machine_info())
    results.comparisons = [
        bench.Comparison("prom_track_run", "per-run", 2.0, 10.0, "us/run", 0.2, 0.5),
        bench.Comparison("multiprocess", "per-run mp", 9.0, 10.0, "us/run", 0.9, 0.7),
        bench.Comparison("threads_prom", "threads", 100.0, 50.0, "runs/s", 0.5),
    ]
    lines = bench.render_text(results)
    report = "\n".join(lines)
    assert "=> prom_track_run = 0.20   target <= 0.50   PASS" in report
    assert "=> multiprocess = 0.90   target <= 0.70   MISS" in report
    assert "=> threads_prom = 0.50   no target   info" in report
    assert "targets: 1/2 PASS; MISS: multiprocess" in lines
    assert bench.parse_summary(lines[-1]) == {
        "prom_track_run": 0.2,
        "multiprocess": 0.9,
        "threads_prom": 0.5,
    }


def test_scale_shapes_stay_within_the_default_cardinality_limits() -> None:
    from otel_jobtrack._core.store import DEFAULT_MAX_JOB_NAMES, DEFAULT_MAX_TENANTS_PER_JOB

    for series in (40, 1_000, 10_000, 50_000, 123_456):
        jobs, tenants = bench.scale_shape(series)
        assert jobs * tenants <= series
        assert jobs <= DEFAULT_MAX_JOB_NAMES and tenants <= DEFAULT_MAX_TENANTS_PER_JOB
