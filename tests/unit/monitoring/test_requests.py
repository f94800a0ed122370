"""The requests monitor: refusals and fallbacks by reason, and the online store's coverage.

A healthy window (every entity known, features found) reads ok; 31 % of requests refused as
unknown_user — the fault that once moved only a counter in /metrics — alerts and is named.
"""

from __future__ import annotations

import json

from model.record import RejectionRecord
from monitoring import sources
from monitoring.requests import ViewCoverage, compute_requests
from tests.conftest import prediction_record

LIMITS = {
    "rejection_warn": 0.005,
    "rejection_alert": 0.02,
    "fallback_warn": 0.01,
    "fallback_alert": 0.05,
    "coverage_warn": 0.99,
    "coverage_alert": 0.9,
    "min_requests": 100,
}


def rejection(i: int, reason: str = "unknown_user") -> RejectionRecord:
    return RejectionRecord(
        request_id=f"x{i}",
        transaction_id=f"t{i}",
        logged_at="2026-03-01T00:00:00+00:00",
        event_ts=1_772_323_200.0 + i,
        user_id=i,
        merchant_id=1,
        device_id=1,
        reason=reason,
        field="user_id",
        model_version="1",
        synthetic=False,
        release="r1",
    )


def answered(n: int, fallback_every: int = 0) -> list:
    return [
        prediction_record(
            request_id=f"a{i}",
            fallback=bool(fallback_every) and i % fallback_every == 0,
            fallback_reason="timeout" if fallback_every and i % fallback_every == 0 else None,
        )
        for i in range(n)
    ]


def full(view: str = "user_profile") -> ViewCoverage:
    return ViewCoverage(view, "user_id", 200, 0)


def test_a_healthy_window_reads_ok() -> None:
    result = compute_requests(answered(1000), [], [full(), full("merchant_stats")], **LIMITS)
    assert result.status == "ok" and not result.findings
    assert result.rejection_rate == 0.0 and result.fallback_rate == 0.0


def test_a_third_of_users_unknown_alerts_and_names_the_reason() -> None:
    refused = [rejection(i) for i in range(310)]
    result = compute_requests(answered(690), refused, [full()], **LIMITS)
    assert result.status == "alert"
    assert result.rejections_by_reason == {"unknown_user": 310}
    assert "unknown_user" in result.findings[0] and "31.0%" in result.findings[0]


def test_fallbacks_are_judged_by_reason() -> None:
    result = compute_requests(answered(1000, fallback_every=10), [], [], **LIMITS)
    assert result.status == "alert" and result.fallbacks_by_reason == {"timeout": 100}


def test_a_coverage_gap_is_reported_even_without_traffic() -> None:
    gap = ViewCoverage("user_profile", "user_id", 200, 60, [3, 5, 8])
    result = compute_requests([], [], [gap], **LIMITS)
    assert result.status == "alert"
    assert "lacks 60 of 200" in result.findings[0] and "make features" in result.findings[0]


def test_the_rejection_log_is_read_by_event_time(tmp_path) -> None:
    records = [rejection(i) for i in range(10)]
    synthetic = RejectionRecord(**{**records[0].to_json(), "request_id": "s", "synthetic": True})
    lines = [json.dumps(r.to_json()) for r in [*records, synthetic]]
    (tmp_path / "rejections-2026-03-01.jsonl").write_text("\n".join(lines) + "\n")
    since = records[5].event_ts
    got = sources.read_rejections(tmp_path, since_event_ts=since)
    assert [r.request_id for r in got] == [f"x{i}" for i in range(5, 10)]
    assert len(sources.read_rejections(tmp_path, include_synthetic=True)) == 11
