"""Latency: p99 computed exactly from the window's scorer times and estimated correctly from
histogram buckets; a p99 above the budget alerts, below it is ok, near it warns; a thin window
gets no verdict; production and load tests are judged apart, so neither dilutes the other;
/metrics is context that never sets the status; the window is the other monitors' (a simulated
day of production, the load tests logged since it began, the serving release running now)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitoring import latency, sources
from monitoring.latency import compute_latency
from tests.conftest import prediction_record

BUDGET = 10.0


def records(latencies_ms, *, synthetic=False, fallback_every: int = 0) -> list:
    return [
        prediction_record(
            latency_ms=float(ms),
            synthetic=synthetic,
            fallback=bool(fallback_every) and i % fallback_every == 0,
        )
        for i, ms in enumerate(latencies_ms)
    ]


def judge(recs, scrape=None, **kwargs):
    options = {
        "budget_ms": BUDGET,
        "warn_ratio": 0.8,
        "min_records": 100,
        "fallback_rate_warn": 0.01,
        "window_hours": 24.0,
    }
    return compute_latency(recs, scrape, **{**options, **kwargs})


def test_p99_is_the_99th_percentile_with_linear_interpolation() -> None:
    p = latency.percentiles(np.arange(1, 1001, dtype=float))  # 1 … 1000 ms
    # rank 0.99 × (1000 − 1) = 989.01 → between the 990th (990 ms) and 991st (991 ms) values
    assert p.p99_ms == pytest.approx(990.01)
    assert p.p50_ms == pytest.approx(500.5)
    assert p.p95_ms == pytest.approx(950.05)
    assert p.n == 1000 and p.max_ms == 1000


def test_a_p99_above_the_budget_alerts() -> None:
    fast, slow = [2.0] * 970, [40.0] * 30  # 3 % of requests over budget
    result = judge(records(fast + slow))
    assert result.log.production.p99_ms == pytest.approx(40.0)
    assert result.log.production_status == result.status == "alert"


def test_a_p99_within_the_budget_is_ok() -> None:
    fast, slow = [2.0] * 995, [40.0] * 5  # 0.5 %: the p99 is still a fast request
    result = judge(records(fast + slow))
    assert result.log.production.p99_ms == pytest.approx(2.0)
    assert result.log.production.max_ms == 40.0
    assert result.status == "ok"


def test_a_p99_close_to_the_budget_warns() -> None:
    result = judge(records([2.0] * 970 + [9.0] * 30))
    assert result.status == "warn"


def test_a_thin_window_gets_no_verdict() -> None:
    result = judge(records([50.0] * 99))
    assert result.status == "insufficient_data"
    assert result.log.all.n == 99 and not result.log.judged


def test_synthetic_load_counts_and_is_reported_apart() -> None:
    recs = records([2.0] * 500) + records([30.0] * 500, synthetic=True)
    result = judge(recs)
    assert result.status == "alert"  # the load test is when latency matters
    assert result.log.production.p99_ms == pytest.approx(2.0)
    assert result.log.synthetic.p99_ms == pytest.approx(30.0)
    assert result.log.production.n == result.log.synthetic.n == 500
    assert (result.log.production_status, result.log.synthetic_status) == ("ok", "alert")


def test_a_day_of_production_does_not_dilute_a_slow_load_test() -> None:
    """A simulated day at full pace, then a short load test on a slowed scorer (scenario 04's
    `fraudlab loadtest` then `fraudlab monitor latency`): 1 % of the window is slow, together
    the p99 would sit on a fast request."""
    recs = records([1.5] * 20_000) + records([30.0] * 150, synthetic=True)
    assert latency.percentiles([r.latency_ms for r in recs]).p99_ms < 8.0
    result = judge(recs)
    assert result.log.production_status == "ok"
    assert result.log.synthetic_status == result.status == "alert"


def test_a_healthy_benchmark_after_a_day_reads_ok() -> None:
    result = judge(records([1.5] * 1000 + [6.0] * 10) + records([2.5] * 3000, synthetic=True))
    assert result.status == "ok" and result.log.judged
    assert "production p99" in result.reason and "synthetic p99" in result.reason


def test_a_thin_population_is_not_judged_but_the_other_is() -> None:
    result = judge(records([2.0] * 500) + records([50.0] * 99, synthetic=True))
    assert result.status == "ok"
    assert result.log.synthetic_status == "insufficient_data"
    assert "synthetic: 99 timed requests" in result.reason


def test_records_without_latency_are_counted_not_timed() -> None:
    result = judge(records([2.0] * 200) + [prediction_record(latency_ms=None)] * 5)
    assert result.log.records == 205 and result.log.without_latency == 5
    assert result.log.all.n == 200


def test_a_high_fallback_rate_warns_even_when_fast() -> None:
    result = judge(records([2.0] * 1000, fallback_every=20))  # 5 % fallbacks
    assert result.log.fallback_rate == pytest.approx(0.05)
    assert result.status == "warn"
    assert "fallback" in result.reason


BUCKETS = [(0.005, 50.0), (0.01, 90.0), (0.025, 100.0), (float("inf"), 100.0)]


def test_histogram_quantiles_interpolate_within_the_bucket() -> None:
    assert latency.histogram_quantile(BUCKETS, 0.5) == pytest.approx(0.005)
    assert latency.histogram_quantile(BUCKETS, 0.95) == pytest.approx(0.0175)
    assert latency.histogram_quantile(BUCKETS, 0.99) == pytest.approx(0.0235)
    assert latency.histogram_quantile([(0.01, 0.0), (float("inf"), 0.0)], 0.99) is None
    beyond = [(0.005, 10.0), (0.01, 10.0), (float("inf"), 100.0)]
    assert latency.histogram_quantile(beyond, 0.99) == 0.01  # above the largest bound


def test_share_within_the_budget_is_exact_on_a_bucket_bound() -> None:
    assert latency.share_within(BUCKETS, 0.01) == pytest.approx(0.9)
    assert latency.share_within(BUCKETS, 0.0175) == pytest.approx(0.95)


METRICS_TEXT = """\
# HELP bentoml_service_request_duration_seconds Request duration
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="200",le="0.005",service_name="fraud_scorer"} 50.0
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="200",le="0.01",service_name="fraud_scorer"} 90.0
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="200",le="0.025",service_name="fraud_scorer"} 100.0
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="200",le="+Inf",service_name="fraud_scorer"} 100.0
bentoml_service_request_duration_seconds_count{endpoint="/score",http_response_code="200",service_name="fraud_scorer"} 100.0
bentoml_service_request_duration_seconds_sum{endpoint="/score",http_response_code="200",service_name="fraud_scorer"} 0.6
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="422",le="0.005",service_name="fraud_scorer"} 7.0
bentoml_service_request_duration_seconds_bucket{endpoint="/score",http_response_code="422",le="+Inf",service_name="fraud_scorer"} 7.0
bentoml_service_request_duration_seconds_count{endpoint="/score",http_response_code="422",service_name="fraud_scorer"} 7.0
bentoml_service_request_duration_seconds_bucket{endpoint="/readyz",http_response_code="200",le="0.005",service_name="fraud_scorer"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/readyz",http_response_code="200",le="+Inf",service_name="fraud_scorer"} 3.0
bentoml_service_request_duration_seconds_count{endpoint="/readyz",http_response_code="200",service_name="fraud_scorer"} 3.0
# HELP fraudlab_feature_lookup_seconds Online feature lookup time.
# TYPE fraudlab_feature_lookup_seconds histogram
fraudlab_feature_lookup_seconds_bucket{le="0.001"} 40.0
fraudlab_feature_lookup_seconds_bucket{le="0.002"} 100.0
fraudlab_feature_lookup_seconds_bucket{le="+Inf"} 100.0
fraudlab_feature_lookup_seconds_count 100.0
fraudlab_feature_lookup_seconds_sum 0.12
# HELP fraudlab_scored_requests_total Scored transactions by decision.
# TYPE fraudlab_scored_requests_total counter
fraudlab_scored_requests_total{decision="approve"} 96.0
fraudlab_scored_requests_total{decision="decline"} 4.0
# HELP fraudlab_feature_fallbacks_total Requests scored without stored features, by reason.
# TYPE fraudlab_feature_fallbacks_total counter
fraudlab_feature_fallbacks_total{reason="timeout"} 2.0
"""


def test_metrics_are_parsed_for_successful_score_calls_only() -> None:
    scrape = latency.parse_metrics(METRICS_TEXT)
    request = scrape["histograms"]["request"]
    assert request["count"] == 100.0  # the 422s and /readyz left out
    assert request["buckets"][:3] == [[0.005, 50.0], [0.01, 90.0], [0.025, 100.0]]
    assert scrape["histograms"]["feature_lookup"]["count"] == 100.0
    assert "inference" not in scrape["histograms"]
    assert scrape["counters"] == {"scored": 100.0, "fallbacks": 2.0}


def _scaled(scrape: dict, factor: float) -> dict:
    out = json.loads(json.dumps(scrape))
    for entry in out["histograms"].values():
        entry["buckets"] = [[le, count * factor] for le, count in entry["buckets"]]
        entry["count"] *= factor
        entry["sum"] *= factor
    out["counters"] = {k: v * factor for k, v in out["counters"].items()}
    return out


def test_scrapes_are_differenced_and_a_restart_is_not() -> None:
    before = latency.parse_metrics(METRICS_TEXT)
    after = _scaled(before, 3.0)
    delta = latency.scrape_delta(after, before)
    assert delta is not None
    assert delta["histograms"]["request"]["count"] == 200.0
    assert delta["histograms"]["request"]["buckets"][1] == [0.01, 180.0]
    assert delta["counters"]["scored"] == 200.0
    assert latency.scrape_delta(before, after) is None  # counts went down: serving restarted


def test_metrics_are_context_and_never_set_the_status() -> None:
    """/metrics since serving started holds a replay's queueing and a benchmark's saturation
    (p99 ≈ 23.5 ms here) while the window's scorer time is healthy: the status is the window's."""
    slow = _scaled(latency.parse_metrics(METRICS_TEXT), 2.0)
    result = judge(records([2.0] * 1000), slow)
    assert result.metrics.request.p99_ms == pytest.approx(23.5)
    assert result.metrics.request_share_within_budget == pytest.approx(0.9)
    assert result.status == "ok"
    assert "/metrics" not in result.reason
    assert result.metrics.fallback_rate == pytest.approx(0.02)  # over the warn level: shown only
    assert latency.metrics_basis(result.metrics) == "since serving started"
    thin = judge(records([2.0] * 10), slow)
    assert thin.status == "insufficient_data"


def test_the_baseline_scrape_is_the_previous_runs() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    history = [
        {"at": (now - timedelta(minutes=m)).isoformat(), "scrape": m} for m in (60, 20, 16, 5)
    ]
    assert latency.pick_baseline(history, now)["scrape"] == 5
    assert latency.pick_baseline([], now) is None


def test_the_summary_is_json_and_html() -> None:
    result = judge(records([2.0] * 150), latency.parse_metrics(METRICS_TEXT))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["log"]["production"]["n"] == 150 and data["metrics"]["basis"] == "since_start"
    page = latency.render_html(result)
    assert "/score" in page and "not judged" in page


def test_the_terminal_and_the_report_draw_one_table() -> None:
    """One list of rows and labels for both: they drifted apart when each drew its own."""
    from rich.console import Console

    from monitoring.run import print_latency

    result = judge(records([2.0] * 150), latency.parse_metrics(METRICS_TEXT))
    console = Console(width=250, record=True)
    print_latency(console, result)
    shown, page = console.export_text(), latency.render_html(result)
    labels = [name for name, _, _ in latency.table_rows(result)]
    assert len(labels) >= 4
    for name in labels:
        assert name in shown and html.escape(name) in page, name


def _line(now: datetime, minutes_ago: float, hours_of_event_time: float, name: str, **fields):
    """A record logged ``minutes_ago`` before ``now`` for a transaction ``hours_of_event_time``
    after a simulated midnight."""
    return prediction_record(
        request_id=name,
        transaction_id=name,
        logged_at=(now - timedelta(minutes=minutes_ago)).isoformat(),
        event_ts=1_772_323_200.0 + hours_of_event_time * 3600.0,
        latency_ms=1.0,
        **{"release": "r2", **fields},
    )


def test_the_window_is_the_monitors_day_with_the_load_tests_logged_since_it_began(
    tmp_path,
) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    lines = [
        _line(now, 300, 0.0, "older-release", release="r1"),
        _line(now, 200, 1.0, "load-before-the-day", synthetic=True),
        _line(now, 190, 2.0, "day-before"),  # > 24 h of event time before the newest
        _line(now, 20, 27.0, "day-start"),  # a fast-forwarded day: logged in minutes
        _line(now, 15, 30.0, "load-during", synthetic=True),
        _line(now, 10, 40.0, "fallback", fallback=True, fallback_reason="timeout"),
        _line(now, 9, 50.0, "day-end"),
        _line(now, 1, 3.0, "load-after", synthetic=True),  # replays an older transaction
    ]
    text = "\n".join(json.dumps(r.to_json()) for r in lines) + '\n{"cut sh'
    (tmp_path / "predictions-2026-11-23.jsonl").write_text(text)
    window = sources.read_served_window(tmp_path, 24.0, current_release_only=True)
    assert [r.request_id for r in window] == [  # oldest logged first
        "day-start",
        "load-during",
        "fallback",
        "day-end",
        "load-after",
    ]
    every_release = sources.read_served_window(tmp_path, 72.0)
    assert "older-release" in {r.request_id for r in every_release}
    # drift's window is the same day, without the load tests and the fallback
    drift = sources.read_window(tmp_path, 24.0, current_release_only=True)
    assert [r.request_id for r in drift] == ["day-start", "day-end"]


def test_without_production_traffic_every_load_test_of_the_release_counts(tmp_path) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    lines = [
        _line(now, 90, 5.0, "previous-release", release="r1"),
        _line(now, 60, 1.0, "bench", synthetic=True),
        _line(now, 1, 90.0, "loadtest", synthetic=True),
    ]
    (tmp_path / "predictions-2026-11-23.jsonl").write_text(
        "".join(json.dumps(r.to_json()) + "\n" for r in lines)
    )
    window = sources.read_served_window(tmp_path, 24.0, current_release_only=True)
    assert [r.request_id for r in window] == ["bench", "loadtest"]
