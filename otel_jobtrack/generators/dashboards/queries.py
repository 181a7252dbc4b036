"""PromQL for the panels: every ``jobtrack_*`` selector goes through :meth:`Queries.sel`, so it
carries the user's selector and the board's variables."""

from __future__ import annotations

from otel_jobtrack._core import contract as c
from otel_jobtrack.generators.dashboards.config import RATE_INTERVAL, DashboardsConfig
from otel_jobtrack.generators.defaults import number, user_matchers


class Queries:
    """PromQL for one configuration."""

    def __init__(self, cfg: DashboardsConfig) -> None:
        self.cfg = cfg

    def sel(self, metric: str, *matchers: str, tenant: bool = True) -> str:
        """``metric{selector, kind, job_name[, tenant], matchers}`` filtered by the variables."""
        parts = [user_matchers(self.cfg.selector), 'kind=~"$kind"', 'job_name=~"$job_name"']
        if tenant:
            parts.append('tenant=~"$tenant"')
        parts.extend(matchers)
        return f"{metric}{{{', '.join(p for p in parts if p)}}}"

    def rate(self, metric: str, *matchers: str) -> str:
        return f"rate({self.sel(metric, *matchers)}[{RATE_INTERVAL}])"

    def runs(self, by: str, *matchers: str) -> str:
        """Runs per second by ``by`` (``""``: one total)."""
        return f"sum{by_clause(by)} ({self.rate(c.RUNS_TOTAL, *matchers)})"

    def resources(self, by: str) -> str:
        return f"sum{by_clause(by)} ({self.rate(c.RESOURCES_TOTAL)})"

    def duration_sum(self, by: str) -> str:
        return f"sum{by_clause(by)} ({self.rate(c.RUN_DURATION + '_sum')})"

    def quantile(self, q: float, by: str) -> str:
        le_by = f"{by}, le" if by else "le"
        bucket = self.rate(c.RUN_DURATION + "_bucket")
        return f"histogram_quantile({number(q)}, sum by ({le_by}) ({bucket}))"

    def state_ratio(self, state: str, by: str) -> str:
        """Share of runs ending in ``state``; 0 (not empty) when no run ended so."""
        hit = self.runs(by, state_matcher(state))
        return f"({hit} or {self.runs(by)} * 0) / {self.runs(by)}"

    def per_run(self, numerator: str, by: str) -> str:
        return f"{numerator} / ({self.runs(by)} > 0)"

    def job_gauge(self, metric: str) -> str:
        """A per-job declaration (no tenant label), one series per kind and job."""
        return f"max by (kind, job_name) ({self.sel(metric, tenant=False)})"

    def remembered(self, metric: str, *matchers: str, tenant: bool = True) -> str:
        """The newest value within the lookback, so it survives its exporter going away."""
        return f"max_over_time({self.sel(metric, *matchers, tenant=tenant)}[{self.cfg.lookback}])"

    def allowed_gap(self) -> str:
        """Declared interval plus grace per job (the interval alone where no grace is declared)."""
        interval = f"max by (kind, job_name) ({self.remembered(c.EXPECTED_INTERVAL, tenant=False)})"
        grace = f"max by (kind, job_name) ({self.remembered(c.GRACE, tenant=False)})"
        return f"(({interval} + on (kind, job_name) {grace}) or {interval})"

    def since_success(self, by: str) -> str:
        last = self.remembered(c.LAST_RUN_TIMESTAMP, state_matcher(c.SUCCESS))
        return f"(time() - max by ({by}) ({last}))"

    def overdue_share(self, by: str) -> str:
        """Share of the allowed gap used since the last success (>= 1: missed)."""
        group = " group_left ()" if "tenant" in by else ""
        return f"{self.since_success(by)} / on (kind, job_name){group} {self.allowed_gap()}"

    def runs_per_interval(self, by: str) -> str:
        """Runs per declared interval (1 = exactly as declared)."""
        group = " group_left ()" if "tenant" in by else ""
        interval = self.job_gauge(c.EXPECTED_INTERVAL)
        return f"{self.runs(by)} * on (kind, job_name){group} {interval}"

    def zero_resource_runs(self, by: str) -> str:
        """Successful runs of jobs that succeeded and touched no resources in the window
        (a failed run touching nothing is a failure, shown elsewhere; as in the alert)."""
        ok = self.runs(by, state_matcher(c.SUCCESS))
        return f"({ok} > 0) unless on ({by}) ({self.resources(by)} > 0)"

    def oldest_age(self, by: str) -> str:
        return f"time() - min{by_clause(by)} ({self.sel(c.OLDEST_RUN_START)})"

    def in_progress(self, by: str) -> str:
        return f"sum{by_clause(by)} ({self.sel(c.RUNS_IN_PROGRESS)})"

    def active_share(self, by: str, state: str) -> str:
        """Share of ``by`` groups with runs that had a run ending in ``state``."""
        hit = f"count({self.runs(by, state_matcher(state))} > 0)"
        return f"({hit} or vector(0)) / count({self.runs(by)} > 0)"

    def label_values(self, label: str, *depends: str) -> str:
        matchers = [user_matchers(self.cfg.selector)]
        matchers += [f'{d}=~"${d}"' for d in depends]
        body = ", ".join(m for m in matchers if m)
        series = f"{c.RUNS_IN_PROGRESS}{{{body}}}" if body else c.RUNS_IN_PROGRESS
        return f"label_values({series}, {label})"


def state_matcher(state: str) -> str:
    return f'state="{state}"'


def by_clause(by: str) -> str:
    return f" by ({by})" if by else ""


def per_min(expr: str) -> str:
    return f"60 * {expr}"
