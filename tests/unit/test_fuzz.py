"""Property-based tests: whatever the job names, tenants, resources, exceptions and nesting,
the exposition parses, passes ``promtool check metrics``, and every count is exact.

Each example runs a generated workload and compares the exposition with a model kept here.
Expositions are collected during the examples and checked by promtool at the end, a few at a
time, since one promtool process per example would dominate the run time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from otel_jobtrack import Job, current_run, track_run, tracked
from otel_jobtrack._core import errors as jt_errors
from otel_jobtrack._core.labels import MAX_JOB_NAME_LENGTH, MAX_TENANT_LENGTH, normalize_tenant
from otel_jobtrack._core.run import reset_for_tests
from otel_jobtrack.exporters.prometheus.app import JobtrackCollector
from tests.backends import promtool

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
PROMTOOL_SAMPLES = 12

# -- strategies ---------------------------------------------------------------------------


def valid_job_name(name: str) -> bool:
    """The rule job names are held to (see ``labels.validate_job_name``), restated."""
    return (
        bool(name.strip())
        and len(name) <= MAX_JOB_NAME_LENGTH
        and not any(unicodedata.category(ch).startswith("C") for ch in name)
    )


job_names = st.text(min_size=1, max_size=60).filter(valid_job_name)
any_char = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc", "Cf", "Zl", "Zp"]),  # control, format, line breaks
    st.sampled_from('"\\\n{}=,#'),  # what the exposition format escapes or splits on
)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this tenant")


class NotText:
    def __str__(self) -> Any:
        return 42


class TextSubclass(str):
    def __str__(self) -> str:
        raise RuntimeError("str() of a str subclass")


tenants = st.one_of(
    st.none(),
    st.text(any_char, max_size=40),
    st.builds(lambda ch, n: ch * n, any_char, st.integers(1, 50_000)),  # huge
    st.binary(max_size=20),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(Unprintable),
    st.builds(NotText),
    st.builds(TextSubclass, st.text(any_char, max_size=10)),
    st.tuples(st.integers(), st.text(max_size=5)),
)
good_resources = st.one_of(
    st.integers(0, 10**12),
    st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
)
bad_resources = st.one_of(
    st.integers(max_value=-1),
    st.floats(max_value=-1e-9),
    st.just(math.nan),
    st.just(math.inf),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


class BrokenException(Exception):
    """Text and equality of this exception both fail, and it cannot be hashed."""

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


class CustomBase(BaseException):
    pass


class Limited(Exception):
    """The jobs' ``limited_exceptions``."""


def _group() -> BaseException:
    return ExceptionGroup("several", [ValueError("a"), KeyError("b")])


exceptions: st.SearchStrategy[Callable[[], BaseException]] = st.one_of(
    st.sampled_from(
        [
            ValueError,
            KeyError,
            RuntimeError,
            OSError,
            ConnectionError,
            TimeoutError,
            MemoryError,
            RecursionError,
            StopIteration,
            KeyboardInterrupt,
            GeneratorExit,
            asyncio.CancelledError,
            BrokenException,
            CustomBase,
            Limited,
            _group,
        ]
    ),
    st.builds(lambda code: lambda: SystemExit(code), st.sampled_from([None, 0, 1, 2, "bye", 0.0])),
)


@dataclass
class Step:
    job: int
    tenant: object
    resources: list[int | float]
    bad_resource: object | None
    limited: bool
    exception: Callable[[], BaseException] | None
    nested: list[Step] = field(default_factory=list)


def steps(depth: int) -> st.SearchStrategy[Step]:
    nested = st.lists(steps(depth - 1), max_size=2) if depth > 0 else st.just([])
    return st.builds(
        Step,
        job=st.integers(0, 2),
        tenant=tenants,
        resources=st.lists(good_resources, max_size=4),
        bad_resource=st.one_of(st.none(), st.none(), bad_resources),
        limited=st.booleans(),
        exception=st.one_of(st.none(), exceptions),
        nested=nested,
    )


@dataclass(frozen=True)
class JobSpec:
    name: str
    kind: str
    suppress_limited: bool


job_specs = st.lists(
    st.builds(
        JobSpec,
        name=job_names,
        kind=st.sampled_from(["cron", "schedule", "resource", "batch"]),
        suppress_limited=st.booleans(),
    ),
    min_size=3,
    max_size=3,
    unique_by=lambda spec: (spec.name, spec.kind),
)

# -- the model and the exposition ---------------------------------------------------------


@dataclass
class Model:
    runs: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    resources: dict[tuple[str, str, str], float] = field(default_factory=dict)


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(JobtrackCollector())
    return reg


def observed(text: str) -> tuple[Counter[tuple[str, ...]], dict[tuple[str, ...], float]]:
    """Runs by (kind, job_name, tenant, state) and resources by series, from the text."""
    runs: Counter[tuple[str, ...]] = Counter()
    resources: dict[tuple[str, ...], float] = {}
    counts: dict[tuple[str, ...], float] = {}
    inf_buckets: dict[tuple[str, ...], float] = {}
    states_seen: dict[tuple[str, ...], set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series = (s.labels.get("kind", ""), s.labels.get("job_name", ""))
            series += (s.labels.get("tenant", ""),)
            if s.name == "jobtrack_runs_total":
                states_seen.setdefault(series, set()).add(s.labels["state"])
                if s.value:  # every state is exported from the first run on, at 0 too
                    runs[(*series, s.labels["state"])] += int(s.value)
            elif s.name == "jobtrack_resources_total":
                resources[series] = s.value
            elif s.name == "jobtrack_run_duration_seconds_count":
                counts[(*series, s.labels["state"])] = s.value
            elif s.name == "jobtrack_run_duration_seconds_bucket" and s.labels["le"] == "+Inf":
                inf_buckets[(*series, s.labels["state"])] = s.value
            elif s.name == "jobtrack_runs_in_progress":
                assert s.value == 0, s
            elif s.name == "jobtrack_oldest_run_start_timestamp_seconds":
                raise AssertionError(f"a run is still in progress: {s}")
    assert counts == inf_buckets == {k: float(v) for k, v in runs.items()}
    assert all(states == {"success", "failure", "limited"} for states in states_seen.values())
    return runs, resources


def check_exposition(model: Model, texts: list[str]) -> None:
    reg = registry()
    text = generate_latest(reg).decode("utf-8")
    runs, resources = observed(text)
    assert runs == model.runs
    assert resources == model.resources
    for family in parse_openmetrics(generate_openmetrics(reg).decode("utf-8")):
        assert family.name.startswith("jobtrack_")
    # Nothing inside otel-jobtrack went wrong, whatever the input.
    assert jt_errors.instrumentation_error_counts() == {}
    texts.append(text)


def fresh() -> None:
    reset_for_tests()
    jt_errors.reset_for_tests()


def promtool_accepts(texts: list[str]) -> None:
    """``promtool check metrics`` on the longest expositions and an even spread of the rest."""
    assert texts
    by_size = sorted(texts, key=len)
    picked = {*by_size[-PROMTOOL_SAMPLES // 2 :]}
    step = max(1, len(by_size) // (PROMTOOL_SAMPLES // 2))
    picked.update(by_size[::step][: PROMTOOL_SAMPLES // 2])
    for text in picked:
        checked = promtool("check", "metrics", input=text)
        # promtool lints too (e.g. counters without _total); only errors fail the check.
        assert checked.returncode == 0, checked.stdout + checked.stderr + text[:2000]


# -- running a generated workload ---------------------------------------------------------


def expected_state(spec: JobSpec, step: Step, raised: BaseException | None) -> tuple[str, bool]:
    """(state, whether the exception should reach the caller) for one run."""
    if raised is None:
        return ("limited" if step.limited else "success"), False
    if isinstance(raised, Limited):
        return "limited", not spec.suppress_limited
    if isinstance(raised, SystemExit) and raised.code in (0, None):
        return ("limited" if step.limited else "success"), True
    return "failure", True


def execute(specs: list[JobSpec], step: Step, model: Model) -> None:
    spec = specs[step.job]
    exc = step.exception() if step.exception is not None else None
    caught: BaseException | None = None
    raised: BaseException | None = None
    counted: float = 0
    try:
        with track_run(
            spec.name,
            kind=spec.kind,
            tenant=step.tenant,
            limited_exceptions=(Limited,),
            suppress_limited=spec.suppress_limited,
        ) as run:
            for n in step.resources:
                run.add_resources(n)
                counted += n
            if step.limited:
                run.mark_limited()
            for inner in step.nested:
                execute(specs, inner, model)
                assert current_run() is run  # the inner run is gone, this one is back
            if step.bad_resource is not None:
                raised = None  # add_resources raises ValueError: the job's programming error
                run.add_resources(step.bad_resource)  # type: ignore[arg-type]
                raise AssertionError(f"add_resources({step.bad_resource!r}) did not raise")
            if exc is not None:
                raised = exc
                raise exc
    except BaseException as error:  # anything at all must come out unchanged
        caught = error
    if step.bad_resource is not None:
        assert type(caught) is ValueError, caught
        raised = caught
    state, propagates = expected_state(spec, step, raised)
    if propagates:
        assert caught is raised  # the very same object, not a copy or a wrapper
    else:
        assert caught is None
    tenant = normalize_tenant(step.tenant)
    assert len(tenant) <= MAX_TENANT_LENGTH
    model.runs[(spec.kind, spec.name, tenant, state)] += 1
    key = (spec.kind, spec.name, tenant)
    model.resources[key] = model.resources.get(key, 0) + counted


def test_any_workload_exports_exact_counts_that_parse() -> None:
    texts: list[str] = []

    @FUZZ
    @given(specs=job_specs, workload=st.lists(steps(2), min_size=1, max_size=6))
    def check(specs: list[JobSpec], workload: list[Step]) -> None:
        fresh()
        model = Model()

        def run_all() -> None:
            for step in workload:
                execute(specs, step, model)
                assert current_run().job.job_name == "no-run"

        # An empty context: no run of another test can be the current one here.
        contextvars.Context().run(run_all)
        check_exposition(model, texts)

    check()
    promtool_accepts(texts)


def test_same_job_in_many_threads_and_nested_runs() -> None:
    texts: list[str] = []

    @settings(FUZZ, max_examples=25)
    @given(
        name=job_names,
        threads=st.integers(2, 8),
        runs=st.integers(1, 40),
        depth=st.integers(0, 3),
        tenants=st.lists(st.text(any_char, max_size=8), min_size=1, max_size=4),
    )
    def check(name: str, threads: int, runs: int, depth: int, tenants: list[str]) -> None:
        fresh()
        job = Job(name, kind="batch")
        barrier = threading.Barrier(threads)
        problems: list[BaseException] = []

        def nest(level: int, tenant: str) -> None:
            with job.run(tenant) as run:
                run.add_resources(1)
                if level:
                    nest(level - 1, tenant)
                assert current_run() is run

        def worker(index: int) -> None:
            try:
                barrier.wait(10)
                for i in range(runs):
                    nest(depth, tenants[(index + i) % len(tenants)])
            except BaseException as exc:  # reported below
                problems.append(exc)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(30)
        assert not problems
        model = Model()
        for index in range(threads):
            for i in range(runs):
                tenant = normalize_tenant(tenants[(index + i) % len(tenants)])
                model.runs[("batch", name, tenant, "success")] += depth + 1
                key = ("batch", name, tenant)
                model.resources[key] = model.resources.get(key, 0) + depth + 1
        check_exposition(model, texts)

    check()
    promtool_accepts(texts)


def test_valid_job_names_round_trip_exactly() -> None:
    texts: list[str] = []

    @settings(FUZZ, max_examples=60)
    @given(names=st.lists(job_names, min_size=1, max_size=5, unique=True))
    def check(names: list[str]) -> None:
        fresh()
        for name in names:
            with track_run(name, kind="cron"):
                pass
        model = Model(
            runs=Counter({("cron", n, "system", "success"): 1 for n in names}),
            resources={("cron", n, "system"): 0 for n in names},
        )
        check_exposition(model, texts)

    check()
    promtool_accepts(texts)


invalid_job_names = st.one_of(
    st.text(st.characters(categories=["Zs"]), max_size=5),  # empty or only spaces
    st.builds(
        lambda a, c, b: a + c + b, job_names, st.characters(categories=["Cc", "Cf"]), st.text()
    ),
    st.text(min_size=MAX_JOB_NAME_LENGTH + 1, max_size=MAX_JOB_NAME_LENGTH + 50).filter(
        lambda s: bool(s.strip())
    ),
    st.builds(lambda n: "x" * n, st.integers(MAX_JOB_NAME_LENGTH + 1, 100_000)),
    st.none(),
    st.integers(),
    st.binary(min_size=1),
)


@settings(FUZZ, max_examples=80)
@given(name=invalid_job_names, kind=st.sampled_from(["cron", "batch"]))
def test_invalid_job_names_raise_value_error_at_definition(name: Any, kind: str) -> None:
    fresh()
    with pytest.raises(ValueError):
        Job(name, kind=kind)
    with pytest.raises(ValueError):
        track_run(name, kind=kind)
    if name is not None:  # tracked() without a name takes the function's name
        with pytest.raises(ValueError):
            tracked(name, kind=kind)
    assert generate_latest(registry()).decode().count("jobtrack_runs_total{") == 0


@settings(FUZZ, max_examples=40)
@given(
    kind=st.text(max_size=10).filter(lambda k: k not in ("cron", "schedule", "resource", "batch"))
)
def test_invalid_kinds_raise_value_error(kind: str) -> None:
    fresh()
    with pytest.raises(ValueError):
        track_run("fuzz.job", kind=kind)
