"""The shared transform: one row and many rows give the same answer; missing means 'no history'."""

from __future__ import annotations

import numpy as np
import pytest

from features.transforms import (
    MODEL_FEATURES,
    NO_PREVIOUS_TXN_S,
    STORED_FEATURES,
    build_model_inputs,
    to_matrix,
    velocity_update,
)

T0 = 1_775_000_000.0


def request(**overrides) -> dict:
    row = {
        "amount": 120.0,
        "channel": "app",
        "ip_region": "EU",
        "event_ts": T0,
        "user_txn_count_1d": 1.0,
        "user_txn_count_7d": 4.0,
        "user_amount_mean_30d": 60.0,
        "user_amount_std_30d": 20.0,
        "user_chargeback_count_90d": 0.0,
        "signup_ts": T0 - 400 * 86_400,
        "home_region": "EU",
        "merchant_category": "grocery",
        "merchant_txn_count_7d": 300.0,
        "merchant_amount_mean_30d": 45.0,
        "merchant_chargeback_rate_30d": 0.001,
        "user_device_txn_count_30d": 12.0,
        "last_txn_ts": T0 - 7200,
        "velocity_1h": 2.0,
        "small_velocity_1h": 0.0,
    }
    row.update(overrides)
    return row


def one(row: dict) -> dict[str, float]:
    out = build_model_inputs({k: [v] for k, v in row.items()})
    return {k: float(v[0]) for k, v in out.items()}


def test_produces_every_model_feature() -> None:
    assert set(one(request())) == set(MODEL_FEATURES)


def test_single_row_equals_batch_row() -> None:
    """Serving scores one row, training a million: both must get identical inputs."""
    rows = [
        request(),
        request(amount=3.0, ip_region="NA", home_region=None),
        request(user_device_txn_count_30d=None, last_txn_ts=None),
    ]
    batch = build_model_inputs({k: [r[k] for r in rows] for k in rows[0]})
    for i, row in enumerate(rows):
        single = one(row)
        for name in MODEL_FEATURES:
            assert single[name] == pytest.approx(float(batch[name][i]), nan_ok=True), name


def test_missing_history_means_new_customer_not_average_customer() -> None:
    row = request(**{name: None for name in STORED_FEATURES})
    out = one(row)
    assert out["is_new_device"] == 1.0
    assert out["user_txn_count_7d"] == 0.0
    assert out["secs_since_last_txn"] == NO_PREVIOUS_TXN_S
    assert out["velocity_1h"] == 0.0
    assert out["account_age_days"] == -1.0
    assert out["geo_mismatch"] == 0.0  # unknown home region is not evidence of travel
    assert out["merchant_category_code"] == -1.0


def test_nan_from_dataframes_counts_as_missing() -> None:
    """Feast's offline frames hold NaN where the online dict holds None."""
    assert one(request(home_region=float("nan"))) == one(request(home_region=None))
    assert one(request(user_device_txn_count_30d=float("nan"))) == one(
        request(user_device_txn_count_30d=None)
    )


def test_geo_mismatch_and_new_device() -> None:
    assert one(request(ip_region="APAC"))["geo_mismatch"] == 1.0
    assert one(request())["geo_mismatch"] == 0.0
    assert one(request(user_device_txn_count_30d=0.0))["is_new_device"] == 1.0
    assert one(request())["is_new_device"] == 0.0


def test_velocity_decays_with_time_since_last_transaction() -> None:
    recent = one(request(last_txn_ts=T0 - 60, velocity_1h=3.0))
    old = one(request(last_txn_ts=T0 - 3 * 3600, velocity_1h=3.0))
    assert recent["velocity_1h"] > 2.9
    assert old["velocity_1h"] == pytest.approx(3.0 * np.exp(-3))
    assert recent["secs_since_last_txn"] == 60.0


def test_velocity_update_counts_small_amounts_and_starts_fresh() -> None:
    first = velocity_update([None], [None], [None], [T0], [2.0])
    assert first["velocity_1h"][0] == 1.0 and first["small_velocity_1h"][0] == 1.0
    second = velocity_update(
        first["last_txn_ts"],
        first["velocity_1h"],
        first["small_velocity_1h"],
        [T0 + 3600],
        [500.0],
    )
    assert second["velocity_1h"][0] == pytest.approx(1 + np.exp(-1))
    assert second["small_velocity_1h"][0] == pytest.approx(np.exp(-1))
    assert second["last_txn_ts"][0] == T0 + 3600


def test_matrix_follows_the_requested_order_by_name() -> None:
    inputs = build_model_inputs({k: [v] for k, v in request().items()})
    order = list(reversed(MODEL_FEATURES))
    matrix = to_matrix(inputs, order)
    assert matrix.dtype == np.float32 and matrix.shape == (1, len(order))
    for j, name in enumerate(order):
        assert matrix[0, j] == pytest.approx(inputs[name][0], rel=1e-6)


def test_matrix_refuses_features_the_transform_does_not_make() -> None:
    inputs = build_model_inputs({k: [v] for k, v in request().items()})
    with pytest.raises(KeyError, match="not_a_feature"):
        to_matrix(inputs, ["amount_log", "not_a_feature"])
