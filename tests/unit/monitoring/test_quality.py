"""Request data quality: healthy logged requests pass the suite; a broken upstream shows as
failures a person can act on; an empty log gets no verdict."""

from __future__ import annotations

import json

from model.record import PredictionRecord
from monitoring import quality
from monitoring.quality import compute_quality
from tests.conftest import prediction_record, small_settings


def logged(i: int, **changes) -> PredictionRecord:
    record = {
        "request_id": f"r{i}",
        "transaction_id": str(1000 + i),
        "user_id": i,
        "merchant_id": 7,
        "device_id": 3 * i,
        "event_ts": 1_775_000_000.0 + 60 * i,
        "request": {"amount": 20.0 + i, "channel": "web", "ip_region": "EU"},
        "score": 0.01,
        "decision": "approve",
        "threshold": 0.05,
        "model_version": "3",
        "fallback": False,
    }
    record.update(changes)
    return prediction_record(**record)


def test_healthy_requests_pass_and_an_upstream_break_is_named() -> None:
    healthy = [logged(i) for i in range(50)]
    assert compute_quality(healthy, 50_000).status == "ok"
    broken = healthy[:40] + [
        logged(i, request={"amount": -5.0, "channel": "fax", "ip_region": "EU"})
        for i in range(40, 50)
    ]
    result = compute_quality(broken, 50_000)
    assert result.status == "alert"
    text = " ".join(result.failures)
    assert "amount" in text and "channel" in text and "fax" in text


def test_an_empty_log_gets_no_verdict(tmp_path) -> None:
    settings = small_settings(tmp_path)
    result = quality.run_quality(settings)
    assert result.status == "insufficient_data"
    saved = json.loads((tmp_path / "monitoring").glob("*/quality.json").__next__().read_text())
    assert saved["status"] == "insufficient_data"
