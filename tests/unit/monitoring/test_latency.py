"""Latency: p99 computed exactly from the log and estimated correctly from histogram buckets;
a p99 above the budget alerts, below it is ok, near it warns; a thin window gets no verdict;
synthetic load counts and is also reported apart; /metrics scrapes are differenced, and a
restarted server is not differenced against its predecessor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitoring import latency
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
        "window_minutes": 15.0,
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
    assert result.log.all.p99_ms == pytest.approx(40.0)
    assert result.status == "alert"


def test_a_p99_within_the_budget_is_ok() -> None:
    fast, slow = [2.0] * 995, [40.0] * 5  # 0.5 %: the p99 is still a fast request
    result = judge(records(fast + slow))
    assert result.log.all.p99_ms == pytest.approx(2.0)
    assert result.log.all.max_ms == 40.0
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


def test_a_slow_server_in_the_metrics_alerts_even_when_the_log_is_fast() -> None:
    slow = _scaled(latency.parse_metrics(METRICS_TEXT), 2.0)  # p99 ≈ 23.5 ms
    result = judge(records([2.0] * 1000), slow, basis="since_scrape", since="t")
    assert result.log.status == "ok"
    assert result.metrics.request.p99_ms == pytest.approx(23.5)
    assert result.metrics.request_share_within_budget == pytest.approx(0.9)
    assert result.metrics.status == "alert" and result.status == "alert"
    assert "since the last scrape" in result.reason


def test_the_baseline_scrape_is_the_newest_one_a_window_old() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    history = [
        {"at": (now - timedelta(minutes=m)).isoformat(), "scrape": m} for m in (60, 20, 16, 5)
    ]
    assert latency.pick_baseline(history, now, 15 * 60)["scrape"] == 16
    assert latency.pick_baseline(history[-1:], now, 15 * 60) is None


def test_the_summary_is_json_and_html() -> None:
    result = judge(records([2.0] * 150), latency.parse_metrics(METRICS_TEXT))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["log"]["all"]["n"] == 150 and data["metrics"]["basis"] == "since_start"
    assert "/score" in latency.render_html(result)


def test_the_window_holds_what_was_logged_in_the_last_minutes_synthetic_included(
    tmp_path,
) -> None:
    from monitoring import sources

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    lines = []
    for minutes_ago, kind in [(40, "old"), (20, "old"), (14, "prod"), (10, "syn"), (1, "fb")]:
        record = prediction_record(
            logged_at=(now - timedelta(minutes=minutes_ago)).isoformat(),
            transaction_id=kind,
            synthetic=kind == "syn",
            fallback=kind == "fb",
            latency_ms=1.0,
        )
        lines.append(json.dumps(record.to_json()))
    (tmp_path / "predictions-2026-11-23.jsonl").write_text("\n".join(lines) + '\n{"cut sh')
    since = now - timedelta(minutes=15)
    window = sources.read_log(
        tmp_path, logged_since=since, include_fallback=True, include_synthetic=True
    )
    assert [r.transaction_id for r in window] == ["prod", "syn", "fb"]  # oldest first
    production = sources.read_log(tmp_path, logged_since=since)
    assert [r.transaction_id for r in production] == ["prod"]
    assert len(sources.read_log(tmp_path, include_fallback=True, include_synthetic=True)) == 5
