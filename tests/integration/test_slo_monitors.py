"""The performance, freshness and latency monitors on the shared stack.

`fraudlab monitor` runs every monitor into one run folder; on the healthy stack freshness is ok,
latency is computed from the log and from serving's /metrics, and performance says how much of
the window has labels instead of judging transactions whose chargebacks cannot have arrived.

Traffic sent here is synthetic (``"synthetic": true``, transaction ids "slo-…"): drift, skew
and performance leave it out, it never moves a card holder's velocity state, and the latency
monitor counts it. The last test runs after the production-traffic replay (marker
``production_traffic``) and checks freshness once the clock has crossed simulated midnights.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from monitoring import sources
from pipelines.data import read_clock, read_meta, read_raw
from tests.integration.test_embedded_stack import payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_SYNTHETIC = 120
MONITORS = ("drift", "skew", "performance", "freshness", "latency", "quality")


def _send_synthetic(stack, n: int, offset: int = 0) -> None:
    txns = read_raw(stack.settings, "transactions")
    future = txns[txns["event_timestamp"] >= read_clock(stack.settings)]
    for _, row in future.iloc[offset : offset + n].iterrows():
        body = {**payload(row, prefix="slo"), "synthetic": True}
        response = stack.score(body)
        assert response.status_code == 200, response.text


def _wait_logged(settings, prefix: str, n: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logged = sources.read_log(settings.prediction_log_dir, include_synthetic=True)
        if sum(str(r.transaction_id).startswith(prefix) for r in logged) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} '{prefix}' records reached the log")


def _runs(settings) -> list:
    return sorted(p for p in settings.monitoring_dir.iterdir() if p.name[:1].isdigit())


def _report(run_dir, name: str) -> dict:
    return json.loads((run_dir / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def monitored(stack):
    """One `fraudlab monitor` (all monitors) after a burst of synthetic requests."""
    _send_synthetic(stack, N_SYNTHETIC)
    _wait_logged(stack.settings, "slo-", N_SYNTHETIC)
    started = time.perf_counter()
    result = stack.cli("monitor", timeout=900)
    print(f"\nfraudlab monitor (all six): {time.perf_counter() - started:.1f}s")
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = _runs(stack.settings)[-1]
    return run_dir, result.stdout


def test_monitor_all_writes_every_report(monitored) -> None:
    run_dir, stdout = monitored
    for name in MONITORS:
        report = _report(run_dir, name)
        assert report["status"] in ("ok", "warn", "alert", "insufficient_data"), name
        assert report["run_dir"] == str(run_dir), name
    for name in ("performance", "freshness", "latency", "skew"):
        assert (run_dir / f"{name}.html").read_text().startswith("<!doctype html>"), name
    for name in ("performance", "freshness", "latency"):  # and their numbers in the workspace
        report = _report(run_dir, name)
        assert report["workspace_run"] and report["workspace_error"] is None, name
    for title in ("Live performance", "Feature freshness", "Latency SLO"):
        assert title in stdout


def test_the_logged_requests_pass_their_data_quality_suite(monitored) -> None:
    run_dir, _ = monitored
    report = _report(run_dir, "quality")
    assert report["status"] == "ok", report["failures"]
    assert report["n_records"] > 0 and report["n_checks"] > 10


def test_freshness_is_ok_on_a_healthy_stack(stack, monitored) -> None:
    run_dir, _ = monitored
    report = _report(run_dir, "freshness")
    assert report["status"] == "ok", report
    views = {v["view"]: v for v in report["views"]}
    assert {"user_stats", "merchant_stats", "user_profile", "user_velocity"} <= set(views)
    for view in views.values():
        if view["kind"] == "batch":
            assert view["status"] == "ok" and view["age_s"] <= view["sla_s"], view
    velocity = views["user_velocity"]
    production = [
        r
        for r in sources.read_log(stack.settings.prediction_log_dir)
        if not str(r.transaction_id).startswith("slo-")
    ]
    if production:  # other files' in-order replays: their pushes must be online
        assert velocity["status"] == "ok", velocity
        assert velocity["probed_users"] > 0 and velocity["lagging_users"] == 0
    else:  # this file alone: synthetic traffic never pushes, nothing to read back
        assert velocity["status"] == "insufficient_data", velocity


def test_latency_is_computed_from_the_log_and_from_serving_metrics(monitored) -> None:
    run_dir, _ = monitored
    report = _report(run_dir, "latency")
    log = report["log"]
    assert log["all"]["n"] >= N_SYNTHETIC
    assert log["synthetic"]["n"] >= N_SYNTHETIC
    p = log["all"]
    assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] <= p["max_ms"]
    assert log["judged"] and log["synthetic_status"] in ("ok", "warn", "alert")
    assert report["metrics_error"] is None
    metrics = report["metrics"]  # context: serving's histograms, never judged
    assert metrics["basis"] in ("since_start", "since_previous")
    # context only, and differenced against the previous run's scrape: a serving restart in
    # between that is followed by more requests than the old count hides the reset from the
    # counter comparison (scrape_delta), so only "it measured requests" is asserted here
    assert metrics["request"]["n"] > 0
    assert metrics["feature_lookup"]["n"] > 0 and metrics["inference"]["n"] > 0
    assert 0 < metrics["request"]["p50_ms"] <= metrics["request"]["p99_ms"]
    assert report["status"] in ("ok", "warn", "alert")


def test_a_second_scrape_is_differenced_against_the_first(stack, monitored) -> None:
    """The next run differences /metrics against the previous run's scrape: exactly the /score
    calls made in between, shown as context (the status is the window's)."""
    before = len(stack.scored_ids)
    _send_synthetic(stack, 10, offset=N_SYNTHETIC)
    result = stack.cli("monitor", "latency", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _report(_runs(stack.settings)[-1], "latency")
    metrics = report["metrics"]
    assert metrics["basis"] == "since_previous", metrics
    assert metrics["request"]["n"] == len(stack.scored_ids) - before == 10
    assert metrics["scored"] == 10
    assert "/metrics" not in report["reason"]


def test_performance_reports_label_maturity_instead_of_judging_fresh_traffic(
    stack, monitored
) -> None:
    run_dir, _ = monitored
    report = _report(run_dir, "performance")
    logged = sources.read_log(stack.settings.prediction_log_dir, include_fallback=True)
    ids = [r.transaction_id for r in logged]
    distinct = {str(t) for t in ids if t is not None}
    without_id = sum(t is None for t in ids)
    # each transaction once (its first decision); an id that is no transaction cannot be labelled
    assert report["n_records"] == len(distinct) + without_id
    assert report["n_unlabelable"] == sum(not t.isdigit() for t in distinct) + without_id
    # the replayed transactions are hours old: no chargeback can be judged yet
    assert report["status"] == "insufficient_data"
    assert report["n_matured"] == 0 and report["n_judged"] == 0
    assert "no verdict" in report["reason"] or report["n_labelable"] == 0
    # the label history says how long chargebacks take
    assert report["delay_chargebacks"] > 0
    completeness = report["completeness_by_age"]
    assert completeness["1d"] < 0.1 < completeness["7d"] < completeness["21d"]
    assert report["baseline"]["recall"] is not None


@pytest.mark.production_traffic
def test_freshness_stays_ok_after_the_replay_crossed_midnight(stack) -> None:
    """Runs after the production-traffic replay: the simulator materialised at each simulated
    midnight, and serving pushed every scored user's velocity."""
    clock = read_clock(stack.settings)
    result = stack.cli("monitor", "freshness", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _report(_runs(stack.settings)[-1], "freshness")
    views = {v["view"]: v for v in report["views"]}
    midnight = clock.floor("D")
    history_end = pd.Timestamp(read_meta(stack.settings)["now"])
    if midnight > history_end:
        # the replay crossed at least one midnight: the batch views were materialised to it
        for name in ("user_stats", "merchant_stats", "user_device_stats"):
            assert pd.Timestamp(views[name]["materialized_until"]) >= midnight, views[name]
    assert report["status"] == "ok", report


def test_a_clock_two_days_past_the_last_materialisation_alerts(stack, monitored) -> None:
    """Materialisation stopped: the clock moves on two simulated days and nothing loads the
    online store. The registry's intervals say so, and the batch views alert; the clock is put
    back afterwards for the files sharing the stack."""
    from pipelines.data import clock_path, write_clock

    path = clock_path(stack.settings)
    saved = path.read_bytes() if path.exists() else None
    try:
        write_clock(stack.settings, read_clock(stack.settings) + pd.Timedelta(days=2))
        result = stack.cli("monitor", "freshness", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        report = _report(_runs(stack.settings)[-1], "freshness")
    finally:
        if saved is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(saved)
    views = {v["view"]: v for v in report["views"]}
    assert report["status"] == "alert"
    for name in ("user_stats", "merchant_stats", "user_device_stats", "user_profile"):
        assert views[name]["status"] == "alert", views[name]
        assert "stopped" in views[name]["detail"]
