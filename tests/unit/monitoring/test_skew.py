"""Skew: identical served and offline features show nothing; an altered amount statistic or a
changed category is flagged with its size; a serving transform that differs from training's is
flagged on the model inputs it changes; missing equals missing, and nothing else does."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd

from features.transforms import MODEL_FEATURES, STORED_FEATURES, build_model_inputs, to_matrix
from model.record import PredictionRecord
from monitoring import skew
from tests.conftest import prediction_record


def served_features(i: int) -> dict:
    return {
        "user_txn_count_1d": float(i % 3),
        "user_txn_count_7d": 2.0 + i,
        "user_amount_mean_30d": 74.85 + i,
        "user_amount_std_30d": 71.93,
        "user_chargeback_count_90d": 0.0,
        "signup_ts": 1_652_774_836.0,
        "home_region": "APAC",
        "merchant_category": "grocery",
        "merchant_txn_count_7d": 20.0,
        "merchant_amount_mean_30d": 57.48,
        "merchant_chargeback_rate_30d": 0.0,
        "user_device_txn_count_30d": 22.0,
        "last_txn_ts": None if i == 0 else 1_774_894_654.0,  # a first purchase: no history
        "velocity_1h": 1.0,
        "small_velocity_1h": 0.0,
    }


def served_inputs(request: dict, features: dict, transform=build_model_inputs) -> dict:
    """What serving logs as model_inputs: the transform over one request and its features."""
    columns = {k: [v] for k, v in {**request, **features}.items()}
    return {name: float(values[0]) for name, values in transform(columns).items()}


def records(n: int = 5) -> list[PredictionRecord]:
    out = []
    for i in range(n):
        request = {"amount": 88.89 + i, "channel": "app", "ip_region": "EU", "event_ts": 1.776e9}
        out.append(
            prediction_record(
                request_id=f"r{i}",
                user_id=i,
                merchant_id=9,
                device_id=10 * i,
                event_ts=request["event_ts"],
                request=request,
                features=served_features(i),
                model_inputs=served_inputs(request, served_features(i)),
                score=0.01 * i,
                model_version="3",
            )
        )
    return out


def offline_like(recs: list[PredictionRecord]) -> pd.DataFrame:
    """What Feast returns for the same rows: NaN (not None) where the store has nothing."""
    frame = skew.served_frame(recs)
    frame["last_txn_ts"] = frame["last_txn_ts"].astype(float)
    return frame


def by_feature(result: list[skew.FeatureSkew]) -> dict[str, skew.FeatureSkew]:
    return {f.feature: f for f in result}


def test_identical_features_show_zero_mismatches() -> None:
    recs = records()
    offline = offline_like(recs)
    assert math.isnan(offline.loc["r0", "last_txn_ts"])  # served None vs offline NaN
    result = skew.compute_skew(recs, offline, model_version="3")
    assert result.status == "ok"
    assert result.mismatches == 0
    assert [f.feature for f in result.features] == list(STORED_FEATURES)
    assert all(f.compared == 5 and f.max_abs_diff in (None, 0.0) for f in result.features)
    assert [f.feature for f in result.inputs] == list(MODEL_FEATURES)
    assert result.input_mismatches == 0


def test_a_serving_transform_that_differs_from_training_is_flagged_on_its_inputs() -> None:
    """Serving read the same stored features, but its transform took amounts in cents."""

    def cents_transform(columns: dict) -> dict:
        return build_model_inputs({**columns, "amount": [a * 100 for a in columns["amount"]]})

    recs = [
        dataclasses.replace(r, model_inputs=served_inputs(r.request, r.features, cents_transform))
        for r in records()
    ]
    result = skew.compute_skew(recs, offline_like(recs), model_version="3")
    assert result.mismatches == 0  # the store and the offline join agree
    flagged = {f.feature: f for f in result.inputs if f.mismatches}
    assert set(flagged) == {"amount_log", "amount_to_user_mean", "amount_to_merchant_mean"}
    assert all(f.mismatch_rate == 1.0 for f in flagged.values())
    assert math.isclose(flagged["amount_log"].max_abs_diff, math.log(100), rel_tol=0.01)
    assert result.status == "alert"


def test_an_amount_feature_times_100_and_a_changed_category_are_flagged() -> None:
    recs = records()
    offline = offline_like(recs)
    offline.loc["r2", "merchant_amount_mean_30d"] *= 100
    offline.loc["r4", "merchant_category"] = "gambling"
    result = skew.compute_skew(recs, offline, model_version="3")
    found = by_feature(result.features)
    assert result.status == "alert"
    assert result.mismatches == 2
    amount = found["merchant_amount_mean_30d"]
    assert amount.mismatches == 1 and amount.mismatch_rate == 0.2
    assert math.isclose(amount.max_abs_diff, 57.48 * 99)
    assert amount.examples == [{"request_id": "r2", "served": 57.48, "offline": 5748.0}]
    category = found["merchant_category"]
    assert category.mismatches == 1
    assert category.examples[0]["offline"] == "gambling"


def test_missing_equals_missing_and_nothing_else() -> None:
    assert skew.values_differ(None, float("nan")) == (False, None)
    assert skew.values_differ(None, None) == (False, None)
    assert skew.values_differ(None, 0.0)[0]
    assert skew.values_differ(float("nan"), "EU")[0]
    assert skew.values_differ("EU", "EU") == (False, None)
    assert not skew.values_differ(1.0, 1.0 + 1e-12)[0]  # float noise is not skew
    assert skew.values_differ(1.0, 1.001)[0]


def test_a_request_the_offline_join_lost_counts_against_every_feature() -> None:
    recs = records()
    offline = offline_like(recs).drop(index="r1")
    result = skew.compute_skew(recs, offline, model_version="3")
    assert all(f.mismatches == 1 for f in result.features)
    assert result.status == "alert"


def test_an_empty_log_gets_no_verdict() -> None:
    result = skew.compute_skew([], pd.DataFrame())
    assert result.status == "insufficient_data"
    assert result.mismatches == 0


def test_score_comparison_counts_rows_beyond_the_parity_tolerance() -> None:
    served = np.array([0.1, 0.2, 0.3, 0.4])
    same = skew.compare_scores(served, served.copy())
    assert (same.compared, same.differing, same.max_abs_diff) == (4, 0, 0.0)
    moved = skew.compare_scores(served, served + np.array([0.0, 5e-5, 0.05, 0.0]))
    assert moved.differing == 1
    assert math.isclose(moved.max_abs_diff, 0.05)


def test_model_matrix_uses_the_request_fields_and_the_given_stored_features() -> None:
    """The re-scored inputs are the shared transform over the record's request + offline row."""
    recs = records()
    offline = offline_like(recs)
    offline.loc["r3", "merchant_amount_mean_30d"] = 990.0
    x = skew.model_matrix(recs, offline, list(MODEL_FEATURES))
    r3 = recs[3]
    expected = to_matrix(
        build_model_inputs(
            {
                **{k: [v] for k, v in r3.request.items()},
                **{k: [v] for k, v in r3.features.items()},
                "merchant_amount_mean_30d": [990.0],
            }
        ),
        list(MODEL_FEATURES),
    )
    np.testing.assert_allclose(x[3], expected[0])
    column = list(MODEL_FEATURES).index("amount_to_merchant_mean")
    assert math.isclose(x[3, column], r3.request["amount"] / 1000.0, rel_tol=1e-6)


def test_summary_is_json_ready() -> None:
    recs = records()
    offline = offline_like(recs)
    offline.loc["r2", "user_txn_count_7d"] = 99.0
    data = skew.compute_skew(copy.deepcopy(recs), offline, model_version="3").to_dict()
    text = json.dumps(data)
    assert '"mismatches": 1' in text
    assert data["features"][1]["mismatch_rate"] == 0.2
