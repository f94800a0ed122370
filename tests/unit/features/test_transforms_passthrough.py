"""Pass-through features: a feature service may add stored features the model takes as they are.

A model trained on ``fraud_model_v1`` must see exactly the inputs it always did, and a model
trained on a service with a pass-through feature must get it from the same transform, in the
order the service lists it.
"""

from __future__ import annotations

import numpy as np

from features.transforms import (
    MODEL_FEATURES,
    PASSTHROUGH_FEATURES,
    STORED_FEATURES,
    build_model_inputs,
    model_features,
    stored_inputs,
    to_matrix,
)
from tests.unit.features.test_transforms import one, request

EXTRA = PASSTHROUGH_FEATURES[0]


def test_a_v1_service_gives_the_v1_inputs_and_nothing_more() -> None:
    assert model_features(STORED_FEATURES) == list(MODEL_FEATURES)
    assert set(one(request())) == set(MODEL_FEATURES)
    assert stored_inputs(MODEL_FEATURES) == STORED_FEATURES


def test_a_passthrough_feature_follows_the_model_features_in_service_order() -> None:
    service = [EXTRA, *STORED_FEATURES, "user_disputes_available_ts"]
    order = model_features(service)
    assert order == [*MODEL_FEATURES, EXTRA]
    # an availability timestamp is stored with the view but is not a model input
    assert "user_disputes_available_ts" not in order
    assert stored_inputs(order) == (*STORED_FEATURES, EXTRA)


def test_a_passthrough_value_reaches_the_model_unchanged_and_missing_means_zero() -> None:
    inputs = one(request(**{EXTRA: 3.0}))
    assert inputs[EXTRA] == 3.0
    assert one(request(**{EXTRA: None}))[EXTRA] == 0.0
    # the other inputs do not depend on it
    without = one(request())
    assert {k: v for k, v in inputs.items() if k != EXTRA} == without


def test_one_row_and_many_rows_agree_with_a_passthrough_feature() -> None:
    rows = [request(**{EXTRA: float(i)}, amount=10.0 + i) for i in range(5)]
    batch = build_model_inputs({k: [r[k] for r in rows] for k in rows[0]})
    order = model_features([*STORED_FEATURES, EXTRA])
    many = to_matrix(batch, order)
    single = np.vstack(
        [to_matrix(build_model_inputs({k: [v] for k, v in r.items()}), order) for r in rows]
    )
    np.testing.assert_array_equal(many, single)
    assert many[:, order.index(EXTRA)].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
