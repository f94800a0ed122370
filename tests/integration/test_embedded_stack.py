"""The embedded stack end to end: scoring, the prediction log, parity of features and scores."""

from __future__ import annotations

import json
import math
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from features.transforms import STORED_FEATURES, to_matrix
from model import export, registry
from pipelines.data import REQUEST_COLUMNS, read_clock, read_raw
from traffic.simulator import payload as simulator_payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_REPLAYED = 60


def payload(txn: pd.Series, prefix: str = "it") -> dict:
    """The simulator's request for this transaction, under a test transaction id."""
    body = simulator_payload(tuple(txn[c] for c in REQUEST_COLUMNS))
    return {**body, "transaction_id": f"{prefix}-{txn['txn_id']}"}


def read_log(settings) -> list[dict]:
    records = []
    for path in sorted(settings.prediction_log_dir.glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


@pytest.fixture(scope="module")
def future(stack) -> pd.DataFrame:
    txns = read_raw(stack.settings, "transactions")
    return txns[txns["event_timestamp"] >= read_clock(stack.settings)].reset_index(drop=True)


@pytest.fixture(scope="module")
def replayed(stack, future) -> tuple[list[dict], list[dict]]:
    """The first future transactions, replayed in order, and their prediction-log records."""
    sent = [payload(row) for _, row in future.head(N_REPLAYED).iterrows()]
    responses = []
    # back to back, as fast as the client goes: a user's second purchase must see the first
    # one's velocity even before serving's batched push reaches the store
    for body in sent:
        response = stack.score(body)
        assert response.status_code == 200, response.text
        responses.append(response.json())
    ids = {b["transaction_id"] for b in sent}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logged = [r for r in read_log(stack.settings) if r.get("transaction_id") in ids]
        if len(logged) >= len(sent):
            break
        time.sleep(0.2)
    return responses, logged


def test_status_reports_every_started_component_healthy(stack) -> None:
    result = stack.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for component in ("mlflow", "evidently", "serving"):
        assert any(component in line and "healthy" in line for line in lines), result.stdout


def test_a_fresh_stacks_champion_faced_its_own_gates(stack) -> None:
    """The first champion has nobody to be compared with: it passed the gates it can pass on
    its own, so a healthy stack's status carries no 'never gated' warning."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", "status"],
        env={**stack.env, "COLUMNS": "250"},  # wide enough that no table cell wraps
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shown = result.stdout + result.stderr
    assert "gates passed" in shown and "never gated" not in shown, shown


def test_scores_with_the_champion(stack, replayed) -> None:
    responses, _ = replayed
    champion = registry.resolve_alias(stack.settings)
    assert champion is not None
    for body in responses:
        assert 0.0 <= body["score"] <= 1.0
        assert body["decision"] in ("approve", "decline")
        assert body["decision"] == ("decline" if body["score"] >= body["threshold"] else "approve")
        assert body["model_version"] == champion[0]
        assert body["fallback"] is False


def test_prediction_log_holds_exactly_the_requests_sent(stack, replayed) -> None:
    responses, logged = replayed
    time.sleep(1.0)  # anything else would have been flushed by now
    log = read_log(stack.settings)
    assert sorted(r["transaction_id"] for r in log) == sorted(stack.scored_ids)
    by_id = {r["transaction_id"]: r for r in logged}
    for body in responses:
        record = by_id[body["transaction_id"]]
        assert record["score"] == pytest.approx(body["score"])
        assert record["decision"] == body["decision"]
        assert record["model_version"] == body["model_version"]


def _same(a, b) -> bool:
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def test_served_features_equal_offline_point_in_time_features(stack, replayed) -> None:
    """Training-serving parity: what serving read online is what training would read offline."""
    from features.store import open_store

    _, logged = replayed
    entities = pd.DataFrame(
        {
            "request_id": [r["request_id"] for r in logged],
            "user_id": [r["user_id"] for r in logged],
            "merchant_id": [r["merchant_id"] for r in logged],
            "device_id": [r["device_id"] for r in logged],
            "event_timestamp": pd.to_datetime([r["event_ts"] for r in logged], unit="s", utc=True),
        }
    )
    store = open_store(stack.settings)
    offline = (
        store.get_historical_features(
            entity_df=entities, features=store.get_feature_service(stack.settings.feature_service)
        )
        .to_df()
        .set_index("request_id")
    )
    mismatches = []
    for record in logged:
        row = offline.loc[record["request_id"]]
        for name in STORED_FEATURES:
            if not _same(record["features"].get(name), row[name]):
                mismatches.append(
                    (record["transaction_id"], name, record["features"].get(name), row[name])
                )
    assert not mismatches, f"{len(mismatches)} served≠offline values, e.g. {mismatches[:5]}"


def test_onnx_and_lightgbm_agree_on_served_inputs(stack, replayed, tmp_path) -> None:
    _, logged = replayed
    bundle = registry.load_alias(stack.settings, tmp_path)
    inputs = {
        name: np.array([r["model_inputs"][name] for r in logged]) for name in bundle.feature_order
    }
    x = to_matrix(inputs, bundle.feature_order)
    booster, calibration = export.load_native(bundle.directory, bundle.spec)
    native = export.native_scores(booster, calibration, x.astype(np.float64))
    served = np.array([r["score"] for r in logged])
    session = export.onnx_session(bundle.onnx_path.read_bytes())
    assert np.allclose(export.onnx_scores(session, x), served, atol=1e-6)
    assert np.mean(np.abs(native - served) <= 1e-4) >= 0.95
    assert np.max(np.abs(native - served)) < 0.05


BAD_INPUTS = {
    "missing field": {
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 10,
        "channel": "app",
        "ip_region": "EU",
    },
    "wrong type": {
        "user_id": "alice",
        "merchant_id": 1,
        "device_id": 10,
        "amount": 10.0,
        "channel": "app",
        "ip_region": "EU",
    },
    "negative amount": {
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 10,
        "amount": -5,
        "channel": "app",
        "ip_region": "EU",
    },
    "absurd amount": {
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 10,
        "amount": 1e12,
        "channel": "app",
        "ip_region": "EU",
    },
    "unknown channel": {
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 10,
        "amount": 5.0,
        "channel": "fax",
        "ip_region": "EU",
    },
    "unknown region": {
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 10,
        "amount": 5.0,
        "channel": "app",
        "ip_region": "MARS",
    },
    "unknown user": {
        "user_id": 987654321,
        "merchant_id": 1,
        "device_id": 10,
        "amount": 5.0,
        "channel": "app",
        "ip_region": "EU",
    },
    "unknown merchant": {
        "user_id": 1,
        "merchant_id": 987654321,
        "device_id": 10,
        "amount": 5.0,
        "channel": "app",
        "ip_region": "EU",
    },
}
RAW_BAD_INPUTS = {
    "NaN amount": '{"user_id": 1, "merchant_id": 1, "device_id": 10, "amount": NaN, '
    '"channel": "app", "ip_region": "EU"}',
    "not JSON": "{user_id: 1",
    "empty body": "",
}


@pytest.mark.parametrize("case", [*BAD_INPUTS, *RAW_BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_the_service_stays_up(stack, future, case) -> None:
    body = BAD_INPUTS.get(case) or RAW_BAD_INPUTS[case]
    if isinstance(body, dict) and "unknown" not in case:
        # a real user and merchant, so only the broken field is wrong
        first = future.iloc[0]
        body = {
            **body,
            "user_id": body["user_id"] if case == "wrong type" else int(first["user_id"]),
            "merchant_id": int(first["merchant_id"]),
        }
    response = stack.score(body)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert response.text.strip(), "an error must say what is wrong"
    assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
    ok = stack.score(payload(future.iloc[1], prefix="after-bad"))
    assert ok.status_code == 200


def test_synthetic_requests_are_logged_but_never_move_velocity_state(stack, future) -> None:
    """A load test replays real card holders: it must not change what their next purchase sees.

    Two synthetic purchases of one user a second apart: had the first been pushed (or laid over
    the store by read-your-writes), the second would see velocity_1h one higher.
    """
    row = future.iloc[-1]  # the latest future transaction: far from the in-order replay
    first = {**payload(row, prefix="syn"), "synthetic": True}
    when = pd.Timestamp(first["timestamp"]) + pd.Timedelta(seconds=1)
    second = {
        **first,
        "transaction_id": f"{first['transaction_id']}-b",
        "timestamp": when.isoformat(),
    }
    for body in (first, second):
        response = stack.score(body)
        assert response.status_code == 200, response.text
    ids = {first["transaction_id"], second["transaction_id"]}
    deadline = time.monotonic() + 15
    logged: list[dict] = []
    while time.monotonic() < deadline and len(logged) < 2:
        logged = [r for r in read_log(stack.settings) if r.get("transaction_id") in ids]
        time.sleep(0.2)
    assert len(logged) == 2
    assert all(r["synthetic"] is True and r["latency_ms"] > 0 for r in logged)
    by_id = {r["transaction_id"]: r for r in logged}
    before = by_id[first["transaction_id"]]["features"]
    after = by_id[second["transaction_id"]]["features"]
    assert after["velocity_1h"] == before["velocity_1h"]
    assert after["last_txn_ts"] == before["last_txn_ts"]


def test_a_refused_request_is_logged_beside_the_predictions(stack, future) -> None:
    """A 422 for an unknown user is counted where the monitors look, with the release that
    refused it; answered requests name their release and schema version too."""
    from model.record import SCHEMA_VERSION
    from monitoring import sources

    body = {**BAD_INPUTS["unknown user"], "transaction_id": "refused-1"}
    assert stack.score(body).status_code == 422
    deadline = time.monotonic() + 15
    refused: list = []
    while time.monotonic() < deadline and not refused:
        refused = [
            r
            for r in sources.read_rejections(stack.settings.prediction_log_dir)
            if r.transaction_id == "refused-1"
        ]
        time.sleep(0.2)
    assert len(refused) == 1, "the refusal must be logged exactly once"
    (record,) = refused
    assert record.reason == "unknown_user" and record.field == "user_id"
    assert record.user_id == 987654321 and record.release
    answered = sources.read_log(stack.settings.prediction_log_dir, include_fallback=True)
    assert answered and all(r.schema_version == SCHEMA_VERSION for r in answered)
    assert all(r.release for r in answered)
