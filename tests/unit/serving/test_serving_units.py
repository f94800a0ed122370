"""Serving's pieces that need no running stack: the request contract, the prediction log,
velocity chaining, the rate-limited warning and the 400→422 middleware."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import numpy as np
import pytest
from pydantic import ValidationError

from features.transforms import velocity_update
from model.record import PredictionRecord
from serving.http import InvalidRequestStatus
from serving.model import RateLimitedWarning
from serving.prediction_log import PredictionSink, VelocityPush
from serving.schemas import MAX_AMOUNT, Transaction
from tests.conftest import prediction_record, small_settings

VALID = {
    "user_id": 1,
    "merchant_id": 2,
    "device_id": 3,
    "amount": 12.5,
    "channel": "web",
    "ip_region": "EU",
    "timestamp": "2026-02-10T12:00:00Z",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", math.nan),
        ("amount", math.inf),
        ("amount", 0),
        ("amount", -5),
        ("amount", MAX_AMOUNT * 10),
        ("channel", "fax"),
        ("ip_region", "MARS"),
        ("timestamp", "2026-02-10T12:00:00"),  # no timezone: ambiguous event time
        ("user_id", "abc"),
        ("user_id", -1),
    ],
)
def test_bad_requests_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate({**VALID, field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_nan_in_json_body_is_refused() -> None:
    body = json.dumps({**VALID, "amount": math.nan})  # Python writes the bare NaN token
    with pytest.raises(ValidationError):
        Transaction.model_validate_json(body)


def test_valid_request_and_optional_fields() -> None:
    txn = Transaction.model_validate({k: v for k, v in VALID.items() if k != "timestamp"})
    assert txn.timestamp is None and txn.transaction_id is None


def _record(i: int) -> PredictionRecord:
    return prediction_record(
        request_id=f"r{i}",
        score=0.1 * i,
        features={"signup_ts": None},
        model_inputs={"amount_log": np.float64(1.5)},
    )


def test_every_record_is_on_disk_after_close(tmp_path) -> None:
    sink = PredictionSink(small_settings(tmp_path))
    for i in range(1000):
        sink.submit(_record(i), None)
    sink.close()
    files = list((tmp_path / "predictions").glob("predictions-*.jsonl"))
    assert len(files) == 1
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["request_id"] for r in lines] == [f"r{i}" for i in range(1000)]
    assert (
        lines[3]["model_inputs"]["amount_log"] == 1.5 and lines[3]["features"]["signup_ts"] is None
    )


def test_non_finite_values_are_logged_as_null_not_dropped(tmp_path) -> None:
    sink = PredictionSink(small_settings(tmp_path))
    sink.submit(
        prediction_record(
            request_id="r",
            features={"velocity_1h": math.nan},
            model_inputs={"x": np.float32("inf")},
        ),
        None,
    )
    sink.close()
    (path,) = (tmp_path / "predictions").glob("*.jsonl")
    record = json.loads(path.read_text())
    assert record["features"]["velocity_1h"] is None and record["model_inputs"]["x"] is None


def test_a_burst_from_one_user_chains_velocity_like_the_backfill(tmp_path) -> None:
    """Three quick transactions: each is served the state after the one before, as offline."""
    sink = PredictionSink(small_settings(tmp_path))
    try:
        stale = {"last_txn_ts": 1000.0, "velocity_1h": 2.0, "small_velocity_1h": 1.0}
        state = {name: [value] for name, value in stale.items()}
        for ts, amount in [(2000.0, 3.0), (2010.0, 1.0), (2020.0, 50.0)]:
            # the store still answers the stale state; serving must see the newest one
            served = sink.fresh_velocity(7, dict(stale))
            for name in stale:
                assert served[name] == pytest.approx(float(state[name][0])), name
            sink.submit({"request_id": str(ts)}, VelocityPush(7, ts, amount, *served.values()))
            state = velocity_update(
                state["last_txn_ts"],
                state["velocity_1h"],
                state["small_velocity_1h"],
                [ts],
                [amount],
            )
        final = sink.fresh_velocity(7, dict(stale))
        assert final["velocity_1h"] == pytest.approx(float(state["velocity_1h"][0]))
        assert final["small_velocity_1h"] == pytest.approx(float(state["small_velocity_1h"][0]))
    finally:
        sink.close()


def test_the_store_state_wins_once_it_is_as_new(tmp_path) -> None:
    sink = PredictionSink(small_settings(tmp_path))
    try:
        sink.submit({"request_id": "a"}, VelocityPush(8, 500.0, 2.0, None, None, None))
        overlaid = sink.fresh_velocity(
            8, {"last_txn_ts": None, "velocity_1h": None, "small_velocity_1h": None}
        )
        assert overlaid == {"last_txn_ts": 500.0, "velocity_1h": 1.0, "small_velocity_1h": 1.0}
        newer = {"last_txn_ts": 900.0, "velocity_1h": 4.0, "small_velocity_1h": 0.0}
        assert sink.fresh_velocity(8, newer) == newer
        assert sink.fresh_velocity(9, newer) == newer  # another user: untouched
    finally:
        sink.close()


def test_rate_limited_warning_does_not_flood_when_flapping(caplog) -> None:
    warn = RateLimitedWarning(every_s=60)
    with caplog.at_level(logging.INFO, logger="fraudlab.serving"):
        for _ in range(50):
            warn.failure("store down")
            warn.recovered("store back")
    assert sum("store down" in r.message for r in caplog.records) == 1
    assert sum("store back" in r.message for r in caplog.records) == 1


def _status_through(middleware_path: str, request_path: str, status: int) -> int:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message):
        sent.append(message)

    middleware = InvalidRequestStatus(app, paths=(middleware_path,))
    asyncio.run(middleware({"type": "http", "path": request_path}, None, send))
    return sent[0]["status"]


def test_validation_400_becomes_422_only_on_scoring_routes() -> None:
    assert _status_through("/score", "/score", 400) == 422
    assert _status_through("/score", "/score", 200) == 200
    assert _status_through("/score", "/reload", 400) == 400
