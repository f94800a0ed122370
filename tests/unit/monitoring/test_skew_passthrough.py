"""Skew for a model on a feature service with a pass-through feature (``fraud_model_v2``).

Serving logs the dispute count such a model reads; the skew check must compare it with the
offline value and re-score the model with it, instead of failing on an input it never built.
"""

from __future__ import annotations

from features.transforms import PASSTHROUGH_FEATURES, STORED_FEATURES, model_features
from model.record import PredictionRecord
from monitoring import skew
from tests.conftest import prediction_record
from tests.unit.monitoring.test_skew import served_features, served_inputs

EXTRA = PASSTHROUGH_FEATURES[0]
ORDER = model_features([*STORED_FEATURES, EXTRA])


def v2_records(n: int = 4) -> list[PredictionRecord]:
    out = []
    for i in range(n):
        request = {"amount": 50.0 + i, "channel": "web", "ip_region": "EU", "event_ts": 1.776e9}
        features = {**served_features(i), EXTRA: float(i % 2)}
        out.append(
            prediction_record(
                request_id=f"v2-{i}",
                user_id=i,
                merchant_id=9,
                device_id=10 * i,
                event_ts=request["event_ts"],
                request=request,
                features=features,
                model_inputs=served_inputs(request, features),
                score=0.1,
                model_version="7",
            )
        )
    return out


def offline_v2(recs: list[PredictionRecord]):
    frame = skew.served_frame(recs, [*STORED_FEATURES, EXTRA])
    frame["last_txn_ts"] = frame["last_txn_ts"].astype(float)
    return frame


def test_the_passthrough_feature_is_compared_and_agrees_when_served_right() -> None:
    recs = v2_records()
    result = skew.compute_skew(recs, offline_v2(recs), model_version="7")
    assert EXTRA in [f.feature for f in result.features]
    assert result.mismatches == 0 and result.input_mismatches == 0, result
    # the offline inputs are rebuilt with it, so a v2 model's matrix can be scored
    assert skew.model_matrix(recs, offline_v2(recs), ORDER).shape == (len(recs), len(ORDER))


def test_a_passthrough_value_served_differently_is_flagged() -> None:
    recs = v2_records()
    offline = offline_v2(recs)
    offline.loc["v2-1", EXTRA] = 5.0  # offline knows of disputes serving did not see
    result = skew.compute_skew(recs, offline, model_version="7")
    flagged = {f.feature: f.mismatches for f in result.features if f.mismatches}
    assert flagged == {EXTRA: 1}
    assert {f.feature for f in result.inputs if f.mismatches} == {EXTRA}
