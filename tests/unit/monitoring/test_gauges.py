"""The SLO monitors' own numbers in the Evidently workspace: each run's numbers are what the
panels chart, in run order; a missing number is a gap, not a zero; only real verdicts are
counted; a workspace that cannot be written is reported, not raised."""

from __future__ import annotations

import math

import pytest

from foundation.settings import Settings
from monitoring import gauges, latency, sources
from tests.unit.monitoring.test_latency import judge, records
from tests.unit.monitoring.test_workspace import charted, store_of


def record_latency(settings: Settings, result: latency.LatencyResult, run: str):
    return gauges.record(
        settings,
        monitor="latency",
        name=f"latency {run}",
        values=latency.workspace_values(result),
        checks={"p99 (production)": result.log.status, "thin": "insufficient_data"},
        check_noun="p99 sources",
        panels=latency.workspace_panels(),
    )


def test_the_panels_chart_each_runs_numbers_in_order(tmp_path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    fast = judge(records([2.0] * 995 + [40.0] * 5))
    slow = judge(records([2.0] * 970 + [40.0] * 30))
    first, error = record_latency(settings, fast, "1")
    assert error is None and first
    record_latency(settings, slow, "2")

    charts = charted(settings)
    p99 = {params["column"]: values for params, values in charts["p99 vs budget (ms)"]}
    assert p99["log_production_p99_ms"] == pytest.approx(
        [fast.log.production.p99_ms, slow.log.production.p99_ms]
    )
    assert "log_synthetic_p99_ms" not in p99  # no load test in these runs
    assert p99["budget_ms"] == [10.0, 10.0]
    assert "metrics_request_p99_ms" not in p99  # no /metrics in these runs: a gap, not a 0
    verdicts = {
        params["categories"]: values
        for params, values in charts["latency: p99 sources by verdict, per run"]
    }
    assert verdicts == {"['ok']": [1.0, 0.0], "['warn']": [0.0, 0.0], "['alert']": [0.0, 1.0]}
    [project] = store_of(settings).list_projects()
    tabs = [t.title for t in store_of(settings).read_dashboard(project).tabs]
    assert tabs == ["status", "latency"]


def test_only_finite_numbers_are_recorded() -> None:
    assert gauges.finite({"a": 1, "b": None, "c": math.nan, "d": math.inf}) == {"a": 1.0}
    assert gauges.snapshot({"b": None}) is None


def test_a_workspace_that_cannot_be_written_is_reported_not_raised(tmp_path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    sources.workspace_dir(settings).parent.mkdir(parents=True)
    sources.workspace_dir(settings).write_text("not a folder")
    run_id, error = record_latency(settings, judge(records([2.0] * 200)), "1")
    assert run_id is None and error
